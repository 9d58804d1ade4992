// Commit on 2xx with Boost.Beast: a synchronous server whose handler is wrapped by
// emissions::http::commit_on_2xx, so its events are committed only for a 2xx response,
// before the response is written. The example sends itself two requests and prints what
// the adapter received.
#include <iostream>
#include <memory>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "emissions/adapters/json_lines.hpp"
#include "emissions/emissions.hpp"
#include "emissions/http/beast.hpp"

namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Request = bhttp::request<bhttp::string_body>;
using Response = bhttp::response<bhttp::string_body>;

Response handle(const Request& req) {
  (void)emissions::emit("order_received", {{"target", std::string(req.target())}});
  const bool ok = req.target() == "/orders/42";
  Response res{ok ? bhttp::status::created : bhttp::status::not_found, req.version()};
  res.body() = ok ? "created\n" : "no such order\n";
  res.prepare_payload();
  return res;
}

int main() {
  emissions::Config config;
  config.add_adapter(std::make_shared<emissions::adapters::JsonLines>("/dev/stdout"));
  emissions::Emitter emitter(std::move(config));

  net::io_context ioc;
  tcp::acceptor acceptor(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  std::thread server([&] {
    auto wrapped = emissions::http::commit_on_2xx(handle);
    for (int i = 0; i < 2; ++i) {
      tcp::socket socket = acceptor.accept();
      boost::beast::flat_buffer buffer;
      Request req;
      bhttp::read(socket, buffer, req);
      bhttp::write(socket, wrapped(req));  // committed (or not) before it is written
    }
  });

  int statuses[2] = {};
  const char* targets[2] = {"/orders/42", "/orders/7"};
  for (int i = 0; i < 2; ++i) {
    tcp::socket socket(ioc);
    socket.connect(acceptor.local_endpoint());
    Request req{bhttp::verb::post, targets[i], 11};
    req.set(bhttp::field::host, "127.0.0.1");
    bhttp::write(socket, req);
    boost::beast::flat_buffer buffer;
    Response res;
    bhttp::read(socket, buffer, res);
    statuses[i] = static_cast<int>(res.result_int());
  }
  server.join();
  (void)emitter.drain();
  std::cerr << "POST /orders/42: " << statuses[0] << ", POST /orders/7: " << statuses[1] << '\n';
  return statuses[0] == 201 && statuses[1] == 404 ? 0 : 1;
}
