/// @file
/// emissions/testing.hpp: capture emitted events in tests and assert on them.
///
/// Link `emissions::testing` (it depends on GoogleTest; from an installed tree,
/// `find_package(emissions CONFIG REQUIRED COMPONENTS testing)`). Call setup() once,
/// reset() before each test, and check what the code under test emitted:
///
/// @code
///   #include <emissions/testing/gtest.hpp>  // the EXPECT_/ASSERT_ macros; includes this file
///
///   class OrdersTest : public ::testing::Test {
///    protected:
///     static void SetUpTestSuite() { emissions::testing::setup(); }
///     void SetUp() override { emissions::testing::reset(); }
///   };
///
///   TEST_F(OrdersTest, CreatingAnOrderEmitsOrderCreated) {
///     orders.create({{"item", "widget"}, {"qty", 5}});  // start(), emit(), commit() inside
///     EXPECT_EMITTED("order_created");
///     EXPECT_EMITTED("order_created", [](const emissions::Event& e) {
///       return e.payload.at("item") == "widget";  // a missing key throws: no match
///     });
///   }
///
///   TEST_F(OrdersTest, AFailedOrderEmitsNothing) {
///     orders.create({{"invalid", true}});  // terminate() inside
///     EXPECT_NOT_EMITTED("order_created");
///   }
/// @endcode
///
/// The assertion functions return a GoogleTest AssertionResult, with a message either way, so
/// they also work as `EXPECT_TRUE(emissions::testing::assert_emitted("x"))`. A failure
/// lists what *was* emitted, so the test output explains itself:
///
/// @code{.unparsed}
///   Expected an event named "order_created" to be emitted (waited 100 ms), but none was.
///   Emitted (2): order_shipped, user_created
/// @endcode
///
/// Delivery is asynchronous: assert_emitted drains the emitter, then keeps waiting (up to
/// its timeout, 100 ms by default) for events committed by other threads, and returns as
/// soon as one matches. refute_emitted drains and then looks, without waiting further.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "emissions/adapter.hpp"
#include "emissions/config.hpp"
#include "emissions/delivery.hpp"
#include "emissions/emitter.hpp"
#include "emissions/event.hpp"
#include "emissions/testing/faulty_adapter.hpp"

/// Test helpers: a capturing adapter, a process-wide test emitter, and assertions on what
/// was emitted (the GoogleTest macros are in emissions/testing/gtest.hpp).
namespace emissions::testing {

/// How long assert_emitted waits for an event by default.
inline constexpr std::chrono::milliseconds kDefaultWait{100};
/// The most the helpers wait for the emitter to drain before they look.
inline constexpr std::chrono::milliseconds kDrainTimeout{5'000};

/// Drives an AsyncAdapter outside any pipeline: hands `events` to `adapter.deliver()` and
/// returns how they were settled by the time deliver() returned: ok when none failed
/// (including events still unsettled, which an adapter may hold), otherwise the first
/// failure's Status. The events must outlive any settlement the adapter makes later.
///
/// @code
///   emissions::adapters::JsonLines sink("out.jsonl");
///   EXPECT_TRUE(emissions::testing::deliver_now(sink, events).ok());
/// @endcode
Status deliver_now(AsyncAdapter& adapter, std::span<const Event> events);

/// An adapter that keeps a copy of every event it receives, for tests to inspect.
///
/// @code
///   auto capture = std::make_shared<emissions::testing::TestAdapter>();
///   emissions::Config config;
///   config.add_adapter(capture);
///   emissions::Emitter emitter(std::move(config));
///   ...
///   capture->wait_for([](auto events) { return events.size() >= 2; }, std::chrono::seconds(1));
///   capture->events()[0].name;  // "order_created"
/// @endcode
///
/// Thread-safety: every member may be called from any thread at any time.
class TestAdapter final : public Adapter {
 public:
  /// An adapter reported under `name` in stats and telemetry.
  explicit TestAdapter(std::string name = "test_adapter") : name_(std::move(name)) {}

  /// The name given to the constructor.
  [[nodiscard]] std::string_view name() const override { return name_; }

  /// Appends copies of the batch and wakes every waiter. Takes the adapter's lock, so it
  /// waits while a wait_until condition is being evaluated. Always returns ok.
  Status handle_events(std::span<const Event> batch) override;

  /// Copies of everything captured since construction or the last clear(), in delivery
  /// order. Takes the lock; allocates.
  [[nodiscard]] std::vector<Event> events() const;
  /// Copies of the captured events from index `first` on (empty when there are fewer), for
  /// looking only at what arrived since an earlier call.
  [[nodiscard]] std::vector<Event> events_from(std::size_t first) const;
  /// How many events are captured now.
  [[nodiscard]] std::size_t size() const;
  /// How many handle_events calls there have been (clear() does not reset it).
  [[nodiscard]] std::uint64_t batches() const;
  /// Forgets the captured events. Does not drain: see emissions::testing::reset().
  void clear();

  /// Blocks until `condition(events)` is true or `deadline` passes; returns the last result.
  /// `condition` is called with the captured events as `std::span<const Event>`, under the
  /// adapter's lock (so it must not call this adapter), at once and after every batch.
  ///
  /// @code
  ///   adapter.wait_until([](auto events) { return !events.empty(); }, deadline);
  /// @endcode
  template <typename Condition>
  bool wait_until(Condition&& condition, std::chrono::steady_clock::time_point deadline) const {
    std::unique_lock lock(mutex_);
    return changed_.wait_until(lock, deadline, [&] {
      return static_cast<bool>(condition(std::span<const Event>(events_)));
    });
  }
  /// wait_until(condition, now + timeout).
  template <typename Condition>
  bool wait_for(Condition&& condition, std::chrono::milliseconds timeout) const {
    return wait_until(std::forward<Condition>(condition),
                      std::chrono::steady_clock::now() + timeout);
  }

 private:
  std::string name_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;  // notified after every batch and clear()
  std::vector<Event> events_;
  std::uint64_t batches_ = 0;
};

// --- the process-wide test emitter ------------------------------------------------------

/// @name The process-wide test emitter
/// setup() builds an Emitter that delivers to a TestAdapter and makes it the default, so the
/// ambient emissions::start()/emit()/commit() used by the code under test go to it. The
/// free functions below without an adapter argument use it.
///
/// Thread-safety: all of these may be called from any thread; setup() and teardown() should
/// not race with tests that are running.
/// @{

/// (Re)creates the process-wide test Emitter from `config`, with a TestAdapter added as its
/// first adapter (keep other adapters in `config` to test them alongside). `make_default` is
/// forced on. A previous setup() is replaced: its emitter is shut down (delivering what it
/// still holds to its own adapters). Throws ConfigError for an invalid config, in which case
/// the previous setup stays in place. The emitter is shut down at exit if teardown() was not
/// called. Returns the new emitter (valid until the next setup() or teardown()).
Emitter& setup(Config config = {});
/// Shuts the process-wide emitter down and forgets it. A no-op when there is none.
void teardown();
/// Drains the emitter, forgets the captured events, and discards this thread's ambient
/// transaction if a failed test left one open. Reports a drain timeout as a test failure.
/// Throws std::logic_error without setup().
void reset();
/// A copy of the events captured so far, after draining. Throws std::logic_error without
/// setup().
[[nodiscard]] std::vector<Event> emitted();
/// The process-wide emitter. Throws std::logic_error without setup().
[[nodiscard]] Emitter& emitter();
/// The process-wide emitter's TestAdapter. Throws std::logic_error without setup().
[[nodiscard]] TestAdapter& adapter();
/// @}

// --- assertions -------------------------------------------------------------------------

/// What assert_emitted(name, predicate) looks for, beyond the name.
using EventPredicate = std::function<bool(const Event&)>;

/// Passes when an event named `name` has been captured. Drains the emitter first, then waits
/// up to `timeout` for one committed meanwhile; returns as soon as one is there. The failure
/// message lists every captured event's name. Blocks the calling thread.
[[nodiscard]] ::testing::AssertionResult assert_emitted(
    EventName name, std::chrono::milliseconds timeout = kDefaultWait);
/// Passes when an event named `name` satisfying `predicate` has been captured; otherwise
/// as above. `predicate` runs on the calling thread, at most once per event, without any
/// lock held; if it throws, that event does not match and the failure message says why.
/// The failure message shows the payload of every event with that name.
[[nodiscard]] ::testing::AssertionResult assert_emitted(
    EventName name, const EventPredicate& predicate,
    std::chrono::milliseconds timeout = kDefaultWait);
/// Passes when no event named `name` has been captured, after draining the emitter (it does
/// not wait for anything committed later). The failure message shows the payloads found.
[[nodiscard]] ::testing::AssertionResult refute_emitted(EventName name);

/// The same assertions on an explicit pair: `adapter` receives events from `emitter`, which
/// is drained first. For tests that build their own Emitter rather than use setup().
///
/// @code
///   auto capture = std::make_shared<emissions::testing::TestAdapter>();
///   emissions::Emitter emitter(emissions::Config{}.add_adapter(capture));
///   EXPECT_EMITTED(*capture, emitter, "order_created");
/// @endcode
/// @{
[[nodiscard]] ::testing::AssertionResult assert_emitted(
    const TestAdapter& adapter, Emitter& emitter, EventName name,
    std::chrono::milliseconds timeout = kDefaultWait);
[[nodiscard]] ::testing::AssertionResult assert_emitted(
    const TestAdapter& adapter, Emitter& emitter, EventName name, const EventPredicate& predicate,
    std::chrono::milliseconds timeout = kDefaultWait);
[[nodiscard]] ::testing::AssertionResult refute_emitted(const TestAdapter& adapter,
                                                        Emitter& emitter, EventName name);
/// @}

}  // namespace emissions::testing
