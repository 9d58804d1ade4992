// The cpp-httplib helper against a real cpp-httplib server and client on 127.0.0.1: 2xx
// commits; 4xx, 5xx and a throwing handler discard; a failed commit becomes a 503.
#include "emissions/http/httplib.hpp"

#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>

#include "emissions/emissions.hpp"
#include "recording_adapter.hpp"

namespace emissions::http {
namespace {

using test_support::RecordingAdapter;

class HttplibHelper : public ::testing::Test {
 protected:
  void SetUp() override {
    Config config;  // the default emitter: handlers use the ambient functions
    config.add_adapter(sink_, {.buffer_size = 1,
                               .overflow = Overflow::block,
                               .block_timeout = std::chrono::milliseconds(1)});
    emitter_ = std::make_unique<Emitter>(std::move(config));
    auto emitting = [](int status, bool throws) {
      return commit_on_2xx([status, throws](const httplib::Request& req, httplib::Response& res) {
        (void)emissions::emit(req.path.substr(1));
        if (throws) throw std::runtime_error("handler failed");
        if (status != 0) res.status = status;
        res.set_content("done\n", "text/plain");
      });
    };
    server_.Post("/created", emitting(201, false));
    server_.Get("/unset", emitting(0, false));
    server_.Post("/invalid", emitting(422, false));
    server_.Get("/broken", emitting(500, false));
    server_.Get("/throws", emitting(0, true));
    port_ = server_.bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  void TearDown() override {
    server_.stop();
    thread_.join();
  }
  std::shared_ptr<RecordingAdapter> sink_ = std::make_shared<RecordingAdapter>();
  std::unique_ptr<Emitter> emitter_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

TEST_F(HttplibHelper, TwoHundredsCommitOthersAndThrowsDiscard) {
  httplib::Client client("127.0.0.1", port_);
  EXPECT_EQ(client.Post("/created")->status, 201);
  EXPECT_EQ(client.Get("/unset")->status, 200);
  EXPECT_EQ(client.Post("/invalid")->status, 422);
  EXPECT_EQ(client.Get("/broken")->status, 500);
  EXPECT_EQ(client.Get("/throws")->status, 500);
  ASSERT_TRUE(emitter_->drain(std::chrono::seconds(5)).ok());
  EXPECT_EQ(sink_->names(), (std::vector<std::string>{"created", "unset"}));
  EXPECT_EQ(emitter_->stats().discarded, 3U);
}

TEST_F(HttplibHelper, AFailedCommitTurnsTheSuccessInto503) {
  httplib::Client client("127.0.0.1", port_);
  sink_->block();
  EXPECT_EQ(client.Post("/created")->status, 201);  // in the blocked call
  ASSERT_TRUE(sink_->wait_until_blocked_in_call());
  EXPECT_EQ(client.Post("/created")->status, 201);  // fills the queue of one
  const auto res = client.Post("/created");
  EXPECT_EQ(res->status, 503);
  EXPECT_NE(res->body.find("overloaded"), std::string::npos);
  sink_->unblock();
  ASSERT_TRUE(emitter_->drain(std::chrono::seconds(5)).ok());
  EXPECT_EQ(sink_->names().size(), 2U);
  EXPECT_EQ(emitter_->stats().discarded, 1U);
}

}  // namespace
}  // namespace emissions::http
