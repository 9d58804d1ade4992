// The Boost.Beast helper in a real (synchronous) Beast server on 127.0.0.1: 2xx commits;
// 4xx, 5xx and a throwing handler discard.
#include "emissions/http/beast.hpp"

#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "emissions/emissions.hpp"
#include "raw_client.hpp"
#include "recording_adapter.hpp"

namespace emissions::http {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Request = bhttp::request<bhttp::string_body>;
using Response = bhttp::response<bhttp::string_body>;

// Serves `requests` requests, one connection each, with `handler`.
template <class Handler>
void serve(tcp::acceptor& acceptor, int requests, Handler handler) {
  for (int i = 0; i < requests; ++i) {
    tcp::socket socket = acceptor.accept();
    beast::flat_buffer buffer;
    Request req;
    bhttp::read(socket, buffer, req);
    Response res;
    try {
      res = handler(req);
    } catch (const std::exception&) {
      res = Response{bhttp::status::internal_server_error, req.version()};
      res.prepare_payload();
    }
    bhttp::write(socket, res);
    beast::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_both, ignored);
  }
}

TEST(BeastHelper, TwoHundredsCommitOthersAndThrowsDiscard) {
  auto sink = std::make_shared<test_support::RecordingAdapter>();
  Config config;
  config.add_adapter(sink);
  Emitter emitter(std::move(config));

  auto handler = commit_on_2xx([](const Request& req) {
    const std::string path(req.target());
    (void)emissions::emit(path.substr(1));
    if (path == "/throws") throw std::runtime_error("handler failed");
    const auto status = path == "/created"   ? bhttp::status::created
                        : path == "/invalid" ? bhttp::status::unprocessable_entity
                                             : bhttp::status::service_unavailable;
    Response res{status, req.version()};
    res.body() = "done\n";
    res.prepare_payload();
    return res;
  });

  net::io_context ioc;
  tcp::acceptor acceptor(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  const auto port = acceptor.local_endpoint().port();
  std::thread server([&] { serve(acceptor, 4, handler); });
  EXPECT_EQ(test::get(port, "/created").status, 201);
  EXPECT_EQ(test::get(port, "/invalid").status, 422);
  EXPECT_EQ(test::get(port, "/unavailable").status, 503);
  EXPECT_EQ(test::get(port, "/throws").status, 500);
  server.join();

  ASSERT_TRUE(emitter.drain(std::chrono::seconds(5)).ok());
  EXPECT_EQ(sink->names(), (std::vector<std::string>{"created"}));
  EXPECT_EQ(emitter.stats().discarded, 3U);
}

TEST(BeastHelper, FinishReadsTheResponseStatus) {
  auto sink = std::make_shared<test_support::RecordingAdapter>();
  Config config;
  config.add_adapter(sink);
  Emitter emitter(std::move(config));
  {
    RequestScope scope;
    ASSERT_TRUE(emissions::emit("kept").ok());
    Response res{bhttp::status::no_content, 11};
    EXPECT_TRUE(finish(scope, res).ok());
  }
  {
    RequestScope scope;
    ASSERT_TRUE(emissions::emit("dropped").ok());
    Response res{bhttp::status::not_found, 11};
    EXPECT_TRUE(finish(scope, res).ok());
  }
  ASSERT_TRUE(emitter.drain(std::chrono::seconds(5)).ok());
  EXPECT_EQ(sink->names(), (std::vector<std::string>{"kept"}));
}

}  // namespace
}  // namespace emissions::http
