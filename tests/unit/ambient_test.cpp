// The ambient (per-thread) API and the default emitter.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <thread>

#include "emissions/emissions.hpp"
#include "recording_adapter.hpp"

namespace {

using namespace std::chrono_literals;
using emissions::Config;
using emissions::Emitter;
using emissions::Errc;
using emissions::test_support::RecordingAdapter;

Config default_config(const std::shared_ptr<RecordingAdapter>& adapter) {
  Config config;
  config.make_default = true;
  config.add_adapter(adapter);
  return config;
}

TEST(AmbientTest, ABufferWhoseEmitterShutDownIsEndedSoTheThreadCanStartAgain) {
  // Defect 8: commit() returned closed and left the buffer active, so start() returned
  // already_started on that thread until someone called terminate().
  auto old_adapter = std::make_shared<RecordingAdapter>("old");
  auto old_emitter = std::make_unique<Emitter>(default_config(old_adapter));
  ASSERT_TRUE(emissions::start().ok());
  ASSERT_TRUE(emissions::emit("pending", 1).ok());
  ASSERT_TRUE(emissions::emit("pending", 2).ok());
  ASSERT_TRUE(old_emitter->shutdown(5s).ok());
  EXPECT_EQ(emissions::commit().code(), Errc::closed);
  EXPECT_FALSE(emissions::active());
  EXPECT_EQ(old_emitter->stats().discarded, 2u);

  auto new_adapter = std::make_shared<RecordingAdapter>("new");
  Emitter new_emitter(default_config(new_adapter));
  ASSERT_TRUE(emissions::start().ok());
  ASSERT_TRUE(emissions::emit("fresh").ok());
  ASSERT_TRUE(emissions::commit().ok());
  ASSERT_TRUE(new_emitter.drain(5s).ok());
  EXPECT_EQ(new_adapter->received(), 1u);
}

TEST(AmbientTest, EmitAndFlushOnAClosedEmitterEndTheBufferToo) {
  auto adapter = std::make_shared<RecordingAdapter>("a");
  Emitter emitter(default_config(adapter));
  ASSERT_TRUE(emissions::start().ok());
  ASSERT_TRUE(emitter.shutdown(5s).ok());
  EXPECT_EQ(emissions::emit("late").code(), Errc::closed);
  EXPECT_FALSE(emissions::active());
  EXPECT_EQ(emissions::start().code(), Errc::closed);
}

TEST(AmbientTest, TheOlderEmitterIsTheDefaultAgainWhenTheNewerOneDies) {
  // Defect 12: the default was not restored when the newest of two emitters died.
  auto first_adapter = std::make_shared<RecordingAdapter>("first");
  Emitter first(default_config(first_adapter));
  {
    auto second_adapter = std::make_shared<RecordingAdapter>("second");
    Emitter second(default_config(second_adapter));
    ASSERT_TRUE(emissions::start().ok());
    ASSERT_TRUE(emissions::emit("to_second").ok());
    ASSERT_TRUE(emissions::commit().ok());
    ASSERT_TRUE(second.drain(5s).ok());
    EXPECT_EQ(second_adapter->received(), 1u);
  }
  ASSERT_TRUE(emissions::start().ok());
  ASSERT_TRUE(emissions::emit("to_first").ok());
  ASSERT_TRUE(emissions::commit().ok());
  ASSERT_TRUE(first.drain(5s).ok());
  EXPECT_EQ(first_adapter->received(), 1u);
}

TEST(AmbientTest, AShutDownEmitterIsNoLongerTheDefaultWhenAnOlderOneIsOpen) {
  auto first_adapter = std::make_shared<RecordingAdapter>("first");
  Emitter first(default_config(first_adapter));
  auto second_adapter = std::make_shared<RecordingAdapter>("second");
  Emitter second(default_config(second_adapter));
  ASSERT_TRUE(second.shutdown(5s).ok());
  ASSERT_TRUE(emissions::start().ok());
  ASSERT_TRUE(emissions::emit("to_first").ok());
  ASSERT_TRUE(emissions::commit().ok());
  ASSERT_TRUE(first.drain(5s).ok());
  EXPECT_EQ(first_adapter->received(), 1u);
  EXPECT_EQ(second_adapter->received(), 0u);
}

TEST(AmbientTest, ADestroyedEmitterReleasesItsAdaptersAlthoughThreadsCachedIt) {
  // Defect 12: thread-local caches kept a destroyed emitter's adapters (sockets, files)
  // alive until each thread that used it exited.
  std::weak_ptr<RecordingAdapter> watched;
  std::thread user;
  std::mutex mutex;
  std::condition_variable changed;
  int step = 0;
  {
    auto adapter = std::make_shared<RecordingAdapter>("cached");
    watched = adapter;
    Emitter emitter(default_config(adapter));
    adapter.reset();
    user = std::thread([&] {
      // Uses the ambient API, then stays alive (with its caches) until told to go.
      EXPECT_TRUE(emissions::start().ok());
      EXPECT_TRUE(emissions::emit("e").ok());
      EXPECT_TRUE(emissions::commit().ok());
      std::unique_lock lock(mutex);
      step = 1;
      changed.notify_all();
      changed.wait_for(lock, 30s, [&] { return step == 2; });
    });
    std::unique_lock lock(mutex);
    ASSERT_TRUE(changed.wait_for(lock, 30s, [&] { return step == 1; }));
  }
  EXPECT_TRUE(watched.expired()) << "the adapter outlived its emitter";
  {
    std::lock_guard lock(mutex);
    step = 2;
  }
  changed.notify_all();
  user.join();
}

TEST(AmbientTest, AnEmitterThatIsShuttingDownIsNoLongerTheDefaultForThreadsThatCachedIt) {
  // The README: the default is the newest emitter "alive and not shut down", so when the
  // newer one shuts down the older is the default again. Threads re-resolved their cached
  // default only when shutdown() returned (up to its timeout later): meanwhile start()
  // returned closed although an older emitter was open.
  auto first_adapter = std::make_shared<RecordingAdapter>("first");
  Emitter first(default_config(first_adapter));
  auto second_adapter = std::make_shared<RecordingAdapter>("second");
  Emitter second(default_config(second_adapter));
  ASSERT_TRUE(emissions::start().ok());  // this thread caches `second` as its default
  emissions::terminate();
  second_adapter->block();
  {
    emissions::Transaction tx = second.start();
    ASSERT_TRUE(tx.emit("pending").ok());
    ASSERT_TRUE(tx.commit().ok());
  }
  ASSERT_TRUE(second_adapter->wait_until_blocked_in_call());
  auto down = std::async(std::launch::async, [&] { return second.shutdown(5s); });
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!second.closed() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(second.closed());
  const emissions::Status started = emissions::start();
  EXPECT_TRUE(started.ok()) << started.to_string();
  if (started.ok()) {
    EXPECT_TRUE(emissions::emit("to_first").ok());
    EXPECT_TRUE(emissions::commit().ok());
  }
  emissions::terminate();
  second_adapter->unblock();
  EXPECT_TRUE(down.get().ok());
  ASSERT_TRUE(first.drain(5s).ok());
  EXPECT_EQ(first_adapter->received(), started.ok() ? 1u : 0u);
}

}  // namespace
