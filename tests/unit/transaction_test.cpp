// Transactions: the per-request buffer, explicit (Transaction) and ambient (per thread).
#include "emissions/transaction.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "emissions/ambient.hpp"
#include "emissions/emitter.hpp"
#include "recording_adapter.hpp"

namespace emissions {
namespace {

using test_support::RecordingAdapter;
using test_support::TelemetryRecorder;
using namespace std::chrono_literals;

struct Order {
  int id = 0;
  double total = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Order, id, total)

class TransactionTest : public ::testing::Test {
 protected:
  std::shared_ptr<RecordingAdapter> adapter = std::make_shared<RecordingAdapter>();
  std::unique_ptr<Emitter> emitter = make_emitter(adapter);

  static std::unique_ptr<Emitter> make_emitter(std::shared_ptr<Adapter> a,
                                               bool make_default = true) {
    Config config;
    config.make_default = make_default;
    config.add_adapter(std::move(a));
    return std::make_unique<Emitter>(std::move(config));
  }
  void drain() { ASSERT_TRUE(emitter->drain(10s).ok()); }
};

TEST_F(TransactionTest, CommitDeliversEventsInEmitOrder) {
  Transaction tx = emitter->start();
  ASSERT_TRUE(tx.active());
  ASSERT_TRUE(tx.emit("a").ok());
  ASSERT_TRUE(tx.emit("b", {{"id", 1}}).ok());
  ASSERT_TRUE(tx.emit("c", 3, {{"source", "api"}}).ok());
  EXPECT_EQ(tx.size(), 3u);
  ASSERT_TRUE(tx.commit().ok());
  EXPECT_FALSE(tx.active());
  drain();
  EXPECT_EQ(adapter->names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(adapter->payloads()[1], (nlohmann::json{{"id", 1}}));
}

TEST_F(TransactionTest, NothingIsDeliveredBeforeCommit) {
  Transaction tx = emitter->start();
  ASSERT_TRUE(tx.emit("a").ok());
  drain();
  EXPECT_EQ(adapter->received(), 0u);
  ASSERT_TRUE(tx.commit().ok());
  drain();
  EXPECT_EQ(adapter->received(), 1u);
}

TEST_F(TransactionTest, EmitAcceptsBracedJsonAndTypesWithToJson) {
  Transaction tx = emitter->start();
  ASSERT_TRUE(tx.emit("order_created", {{"id", 1}, {"total", 9.5}}).ok());
  ASSERT_TRUE(tx.emit("order_created", Order{2, 3.5}).ok());
  ASSERT_TRUE(tx.commit().ok());
  drain();
  const auto payloads = adapter->payloads();
  ASSERT_EQ(payloads.size(), 2u);
  EXPECT_EQ(payloads[0]["total"], 9.5);
  EXPECT_EQ(payloads[1]["id"], 2);
  EXPECT_EQ(payloads[1]["total"], 3.5);
}

TEST_F(TransactionTest, PayloadIsMovedNotCopiedToTheAdapter) {
  nlohmann::json payload = std::string(1000, 'x');
  const std::string* original = payload.get_ptr<const std::string*>();
  std::atomic<const std::string*> seen{nullptr};
  auto probe = std::make_shared<RecordingAdapter>("probe");
  probe->set_on_event([&](const Event& e) { seen = e.payload.get_ptr<const std::string*>(); });
  auto local = make_emitter(probe, false);
  Transaction tx = local->start();
  ASSERT_TRUE(tx.emit("big", std::move(payload)).ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(local->drain(10s).ok());
  EXPECT_EQ(seen.load(), original);
}

TEST_F(TransactionTest, NullMetadataBecomesEmptyObjectAndEventsCarryIdAndTime) {
  std::atomic<bool> checked{false};
  auto probe = std::make_shared<RecordingAdapter>("probe");
  const auto before = std::chrono::system_clock::now();
  probe->set_on_event([&](const Event& e) {
    EXPECT_TRUE(e.metadata.is_object());
    EXPECT_TRUE(e.metadata.empty());
    EXPECT_FALSE(e.id.is_nil());
    EXPECT_GE(e.emitted_at, before - 1s);
    EXPECT_LE(e.emitted_at, std::chrono::system_clock::now() + 1s);
    checked = true;
  });
  auto local = make_emitter(probe, false);
  Transaction tx = local->start();
  ASSERT_TRUE(tx.emit("x").ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(local->drain(10s).ok());
  EXPECT_TRUE(checked.load());
}

TEST_F(TransactionTest, EventIdsIncreaseInEmitOrder) {
  std::vector<EventId> ids;
  std::mutex m;
  auto probe = std::make_shared<RecordingAdapter>("probe");
  probe->set_on_event([&](const Event& e) {
    std::lock_guard lock(m);
    ids.push_back(e.id);
  });
  auto local = make_emitter(probe, false);
  Transaction tx = local->start();
  for (int i = 0; i < 100; ++i)
    ASSERT_TRUE(tx.emit("x", i).ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(local->drain(10s).ok());
  ASSERT_EQ(ids.size(), 100u);
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end());
}

TEST_F(TransactionTest, EmitWithEmptyNameIsInvalidAndLeavesBufferUnchanged) {
  Transaction tx = emitter->start();
  ASSERT_TRUE(tx.emit("kept").ok());
  Status s = tx.emit("");
  EXPECT_EQ(s.code(), Errc::invalid_argument);
  EXPECT_NE(s.message().find("name"), std::string::npos);
  EXPECT_EQ(tx.size(), 1u);
  ASSERT_TRUE(tx.commit().ok());
  drain();
  EXPECT_EQ(adapter->names(), (std::vector<std::string>{"kept"}));
}

TEST_F(TransactionTest, EmitWithNonObjectMetadataIsInvalidAndLeavesBufferUnchanged) {
  Transaction tx = emitter->start();
  ASSERT_TRUE(tx.emit("kept").ok());
  Status s = tx.emit("bad", {}, nlohmann::json::array({1, 2}));
  EXPECT_EQ(s.code(), Errc::invalid_argument);
  EXPECT_NE(s.message().find("metadata"), std::string::npos);
  EXPECT_EQ(tx.emit("bad", {}, 42).code(), Errc::invalid_argument);
  EXPECT_EQ(tx.size(), 1u);
}

TEST_F(TransactionTest, FlushDeliversAndKeepsTheBufferOpen) {
  Transaction tx = emitter->start();
  ASSERT_TRUE(tx.emit("validated").ok());
  ASSERT_TRUE(tx.flush().ok());
  EXPECT_TRUE(tx.active());
  EXPECT_EQ(tx.size(), 0u);
  drain();
  EXPECT_EQ(adapter->names(), (std::vector<std::string>{"validated"}));
  ASSERT_TRUE(tx.emit("fulfilled").ok());
  ASSERT_TRUE(tx.commit().ok());
  drain();
  EXPECT_EQ(adapter->names(), (std::vector<std::string>{"validated", "fulfilled"}));
}

TEST_F(TransactionTest, TerminateDiscardsEvents) {
  Transaction tx = emitter->start();
  ASSERT_TRUE(tx.emit("a").ok());
  ASSERT_TRUE(tx.emit("b").ok());
  tx.terminate();
  EXPECT_FALSE(tx.active());
  EXPECT_EQ(tx.emit("c").code(), Errc::not_started);
  drain();
  EXPECT_EQ(adapter->received(), 0u);
  EXPECT_EQ(emitter->stats().discarded, 2u);
}

TEST_F(TransactionTest, TerminateWithoutBufferIsANoOp) {
  Transaction tx;
  tx.terminate();
  tx.terminate();
  EXPECT_FALSE(tx.active());
}

TEST_F(TransactionTest, CommitOfEmptyBufferSucceedsAndDeliversNothing) {
  Transaction tx = emitter->start();
  EXPECT_TRUE(tx.flush().ok());
  EXPECT_TRUE(tx.commit().ok());
  drain();
  EXPECT_EQ(adapter->received(), 0u);
  EXPECT_EQ(adapter->batch_sizes().size(), 0u);
}

TEST_F(TransactionTest, EmitAfterCommitReturnsNotStarted) {
  Transaction tx = emitter->start();
  ASSERT_TRUE(tx.commit().ok());
  EXPECT_EQ(tx.emit("late").code(), Errc::not_started);
  EXPECT_EQ(tx.commit().code(), Errc::not_started);
  EXPECT_EQ(tx.flush().code(), Errc::not_started);
}

TEST_F(TransactionTest, DestroyedActiveTransactionDiscardsAndReportsTerminated) {
  TelemetryRecorder rec("tx-destroyed", {{"emissions", "buffer", "terminated"}});
  {
    Transaction tx = emitter->start();
    ASSERT_TRUE(tx.emit("a").ok());
    ASSERT_TRUE(tx.emit("b").ok());
  }
  drain();
  EXPECT_EQ(adapter->received(), 0u);
  auto records = rec.records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].measurements["count"], 1);
  EXPECT_EQ(records[0].metadata["event_count"], 2);
}

TEST_F(TransactionTest, MoveTransfersTheBuffer) {
  Transaction a = emitter->start();
  ASSERT_TRUE(a.emit("x").ok());
  Transaction b = std::move(a);
  EXPECT_TRUE(b.active());
  EXPECT_EQ(b.size(), 1u);
  Transaction c;
  c = std::move(b);
  ASSERT_TRUE(c.commit().ok());
  drain();
  EXPECT_EQ(adapter->received(), 1u);
}

TEST_F(TransactionTest, BufferTelemetryReportsStartedCommittedAndCounts) {
  TelemetryRecorder rec("tx-telemetry",
                        {{"emissions", "buffer", "started"}, {"emissions", "buffer", "committed"}});
  Transaction tx = emitter->start();
  ASSERT_TRUE(tx.emit("a").ok());
  ASSERT_TRUE(tx.emit("b").ok());
  ASSERT_TRUE(tx.commit().ok());
  auto started = rec.records({"emissions", "buffer", "started"});
  auto committed = rec.records({"emissions", "buffer", "committed"});
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].measurements, (nlohmann::json{{"count", 1}}));
  EXPECT_EQ(started[0].metadata, nlohmann::json::object());
  ASSERT_EQ(committed.size(), 1u);
  EXPECT_EQ(committed[0].measurements, (nlohmann::json{{"count", 2}}));
  EXPECT_EQ(committed[0].metadata, (nlohmann::json{{"event_count", 2}}));
}

// ---- ambient (per thread) ----------------------------------------------------------------

TEST_F(TransactionTest, AmbientCommitDeliversEventsInEmitOrder) {
  ASSERT_TRUE(start().ok());
  EXPECT_TRUE(active());
  ASSERT_TRUE(emit("order_created", {{"id", 1}}, {{"source", "api"}}).ok());
  ASSERT_TRUE(emit("order_shipped", Order{1, 2.0}).ok());
  ASSERT_TRUE(commit().ok());
  EXPECT_FALSE(active());
  drain();
  EXPECT_EQ(adapter->names(), (std::vector<std::string>{"order_created", "order_shipped"}));
}

TEST_F(TransactionTest, AmbientStartWhileActiveReturnsAlreadyStarted) {
  ASSERT_TRUE(start().ok());
  EXPECT_EQ(start().code(), Errc::already_started);
  terminate();
}

TEST_F(TransactionTest, AmbientEmitWithoutBufferReturnsNotStartedAndReportsDrop) {
  TelemetryRecorder rec("ambient-drop", {{"emissions", "event", "dropped"}});
  EXPECT_EQ(emit("orphan").code(), Errc::not_started);
  auto records = rec.records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].measurements, (nlohmann::json{{"count", 1}}));
  EXPECT_EQ(records[0].metadata["event_name"], "orphan");
  EXPECT_EQ(records[0].metadata["reason"], "not_started");
}

TEST_F(TransactionTest, AmbientEmitAfterCommitReturnsNotStarted) {
  ASSERT_TRUE(start().ok());
  ASSERT_TRUE(commit().ok());
  EXPECT_EQ(emit("late").code(), Errc::not_started);
  EXPECT_EQ(commit().code(), Errc::not_started);
}

TEST_F(TransactionTest, AmbientTerminateDiscardsAndIsSafeWithoutBuffer) {
  terminate();
  ASSERT_TRUE(start().ok());
  ASSERT_TRUE(emit("a").ok());
  terminate();
  EXPECT_FALSE(active());
  terminate();
  drain();
  EXPECT_EQ(adapter->received(), 0u);
}

TEST_F(TransactionTest, AmbientFlushKeepsBufferOpen) {
  ASSERT_TRUE(start().ok());
  ASSERT_TRUE(emit("a").ok());
  ASSERT_TRUE(flush().ok());
  EXPECT_TRUE(active());
  ASSERT_TRUE(emit("b").ok());
  ASSERT_TRUE(commit().ok());
  drain();
  EXPECT_EQ(adapter->names(), (std::vector<std::string>{"a", "b"}));
}

TEST_F(TransactionTest, ThreadExitingWithActiveBufferDiscardsIt) {
  TelemetryRecorder rec("thread-exit", {{"emissions", "buffer", "terminated"}});
  std::thread worker([] {
    ASSERT_TRUE(start().ok());
    ASSERT_TRUE(emit("abandoned").ok());
  });
  worker.join();
  drain();
  EXPECT_EQ(adapter->received(), 0u);
  auto records = rec.records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].metadata["event_count"], 1);
  EXPECT_EQ(emitter->stats().discarded, 1u);
}

TEST_F(TransactionTest, BuffersOfDifferentThreadsDoNotInterfere) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < kPerThread; ++i) {
        ASSERT_TRUE(start().ok());
        ASSERT_TRUE(emit("mine", {{"thread", t}, {"i", i}}).ok());
        if (t % 2 == 0) {
          ASSERT_TRUE(commit().ok());
        } else {
          terminate();  // odd threads abandon everything
        }
      }
    });
  }
  for (auto& th : threads)
    th.join();
  drain();
  const auto payloads = adapter->payloads();
  ASSERT_EQ(payloads.size(), static_cast<std::size_t>(kThreads / 2 * kPerThread));
  std::vector<int> next(kThreads, 0);
  for (const auto& p : payloads) {
    const int t = p["thread"];
    ASSERT_EQ(t % 2, 0);
    EXPECT_EQ(p["i"], next[static_cast<std::size_t>(t)]++);
  }
}

TEST_F(TransactionTest, AmbientStartWithoutDefaultEmitterIsUnavailable) {
  emitter.reset();
  EXPECT_EQ(start().code(), Errc::unavailable);
  auto other = make_emitter(std::make_shared<RecordingAdapter>("other"), /*make_default=*/false);
  EXPECT_EQ(start().code(), Errc::unavailable);
  other->make_default();
  ASSERT_TRUE(start().ok());
  terminate();
}

TEST_F(TransactionTest, ExplicitTransactionIgnoresTheAmbientOne) {
  ASSERT_TRUE(start().ok());
  ASSERT_TRUE(emit("ambient").ok());
  Transaction tx = emitter->start();
  ASSERT_TRUE(tx.emit("explicit").ok());
  ASSERT_TRUE(tx.commit().ok());
  drain();
  EXPECT_EQ(adapter->names(), (std::vector<std::string>{"explicit"}));
  ASSERT_TRUE(commit().ok());
  drain();
  EXPECT_EQ(adapter->names(), (std::vector<std::string>{"explicit", "ambient"}));
}

TEST_F(TransactionTest, CurrentCanBeMovedToAnotherThread) {
  ASSERT_TRUE(start().ok());
  ASSERT_TRUE(emit("handed_over").ok());
  Transaction moved = std::move(current());
  EXPECT_FALSE(active());
  std::thread other([&] {
    current() = std::move(moved);
    ASSERT_TRUE(active());
    ASSERT_TRUE(commit().ok());
  });
  other.join();
  drain();
  EXPECT_EQ(adapter->names(), (std::vector<std::string>{"handed_over"}));
}

TEST_F(TransactionTest, EmitAndCommitAfterShutdownReturnClosed) {
  Transaction tx = emitter->start();
  ASSERT_TRUE(tx.emit("before").ok());
  ASSERT_TRUE(emitter->shutdown(5s).ok());
  EXPECT_EQ(tx.emit("after").code(), Errc::closed);
  EXPECT_EQ(tx.commit().code(), Errc::closed);
  EXPECT_EQ(tx.size(), 1u);  // nothing accepted was lost: the caller still holds it
  Transaction late = emitter->start();
  EXPECT_FALSE(late.active());
  EXPECT_EQ(late.emit("x").code(), Errc::closed);
  // The ambient start() says closed, as ambient.hpp promises (it said unavailable).
  EXPECT_EQ(start().code(), Errc::closed);
}

}  // namespace
}  // namespace emissions
