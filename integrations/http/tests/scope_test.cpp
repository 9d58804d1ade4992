// RequestScope: commit on 2xx, discard otherwise and when destroyed unfinished.
#include "emissions/http/scope.hpp"

#include <stdexcept>

#include <gtest/gtest.h>

#include "emissions/emissions.hpp"
#include "recording_adapter.hpp"

namespace emissions::http {
namespace {

using test_support::RecordingAdapter;

struct DefaultEmitter {
  DefaultEmitter() {
    Config config;  // make_default: RequestScope works on the ambient buffer
    config.add_adapter(sink);
    emitter = std::make_unique<Emitter>(std::move(config));
  }
  std::shared_ptr<RecordingAdapter> sink = std::make_shared<RecordingAdapter>();
  std::unique_ptr<Emitter> emitter;
};

Status handle(int status) {
  RequestScope scope;
  EXPECT_TRUE(scope.start_status().ok());
  EXPECT_TRUE(emissions::emit("e" + std::to_string(status)).ok());
  return scope.finish(status);
}

TEST(RequestScope, A2xxCommitsAndAnythingElseDiscards) {
  DefaultEmitter s;
  for (int status : {200, 201, 204, 299, 100, 301, 304, 400, 404, 422, 500, 503})
    EXPECT_TRUE(handle(status).ok()) << status;
  ASSERT_TRUE(s.emitter->drain(std::chrono::seconds(5)).ok());
  EXPECT_EQ(s.sink->names(), (std::vector<std::string>{"e200", "e201", "e204", "e299"}));
  EXPECT_EQ(s.emitter->stats().discarded, 8U);
  EXPECT_FALSE(emissions::active());
}

TEST(RequestScope, DestroyedUnfinishedAsWhenTheHandlerThrows) {
  DefaultEmitter s;
  try {
    RequestScope scope;
    ASSERT_TRUE(emissions::emit("lost").ok());
    throw std::runtime_error("handler failed");
  } catch (const std::runtime_error&) {
  }
  EXPECT_FALSE(emissions::active());
  ASSERT_TRUE(s.emitter->drain(std::chrono::seconds(5)).ok());
  EXPECT_TRUE(s.sink->names().empty());
  EXPECT_EQ(s.emitter->stats().discarded, 1U);
}

TEST(RequestScope, FinishingTwiceIsAnError) {
  DefaultEmitter s;
  RequestScope scope;
  EXPECT_TRUE(scope.finish(200).ok());
  EXPECT_TRUE(scope.finished());
  EXPECT_EQ(scope.finish(200).code(), Errc::invalid_argument);
}

TEST(RequestScope, WithoutADefaultEmitterFinishSaysWhy) {
  RequestScope scope;
  EXPECT_EQ(scope.start_status().code(), Errc::unavailable);
  EXPECT_EQ(scope.finish(200).code(), Errc::unavailable);
}

TEST(RequestScope, AFailedCommitEndsTheBufferAnyway) {
  Config config;
  auto sink = std::make_shared<RecordingAdapter>();
  config.add_adapter(sink, {.buffer_size = 1,
                            .overflow = Overflow::block,
                            .block_timeout = std::chrono::milliseconds(1)});
  Emitter emitter(std::move(config));
  sink->block();
  EXPECT_TRUE(handle(200).ok());  // taken by the consumer, which blocks in the call
  ASSERT_TRUE(sink->wait_until_blocked_in_call());
  EXPECT_TRUE(handle(200).ok());  // fills the queue
  EXPECT_EQ(handle(200).code(), Errc::overloaded);
  EXPECT_FALSE(emissions::active());  // the next request can start its own scope
  sink->unblock();
  ASSERT_TRUE(emitter.drain(std::chrono::seconds(5)).ok());
  EXPECT_EQ(sink->names().size(), 2U);
  EXPECT_EQ(emitter.stats().discarded, 1U);
}

}  // namespace
}  // namespace emissions::http
