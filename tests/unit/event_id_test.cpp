// EventId: UUIDv7 generation (time, order, uniqueness) and its text form.
#include "emissions/event_id.hpp"

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "time/wall_clock.hpp"

namespace emissions {
namespace {

using std::chrono::system_clock;
using namespace std::chrono_literals;

// 2026-11-21T01:37:33.123456789Z
system_clock::time_point sample_time() {
  return system_clock::time_point(std::chrono::duration_cast<system_clock::duration>(
      std::chrono::nanoseconds(1'795'225'053'123'456'789LL)));
}

// Runs `body` on a thread of its own: ids of one thread never go backward, so a thread
// that already made later ids would stamp new ones with that later time.
template <typename Body>
void on_fresh_thread(Body body) {
  std::thread(std::move(body)).join();
}

TEST(EventIdTest, StaysWithinAMillisecondOfEmittedAtAtFullSpeed) {
  // As emit does it, as fast as one thread can: 500 k ids in ~100 ms used to carry the
  // sub-millisecond counter into the milliseconds and run hundreds of ms ahead.
  constexpr std::size_t kIds = 1'000'000;
  std::vector<std::pair<system_clock::time_point, EventId>> made;
  made.reserve(kIds);
  on_fresh_thread([&] {
    for (std::size_t i = 0; i < kIds; ++i) {
      const auto now = detail::wall_now();
      made.emplace_back(now, EventId::generate(now));
    }
  });
  ASSERT_EQ(made.size(), kIds);
  for (std::size_t i = 0; i < kIds; ++i) {
    const auto& [emitted_at, id] = made[i];
    ASSERT_LE(std::chrono::abs(id.timestamp() - emitted_at), 1ms)
        << "id " << i << " of " << kIds << " is "
        << std::chrono::duration_cast<std::chrono::microseconds>(id.timestamp() - emitted_at)
               .count()
        << " us from its emitted_at";
    if (i > 0) {
      ASSERT_LT(made[i - 1].second, id) << "at " << i;
    }
  }
}

TEST(EventIdTest, AMillionIdsAtOneInstantStayInItsMillisecond) {
  constexpr std::size_t kIds = 1'000'000;
  std::vector<EventId> ids;
  ids.reserve(kIds);
  on_fresh_thread([&] {
    for (std::size_t i = 0; i < kIds; ++i)
      ids.push_back(EventId::generate(sample_time()));
  });
  const auto ms = std::chrono::floor<std::chrono::milliseconds>(sample_time());
  for (std::size_t i = 0; i < kIds; ++i) {
    ASSERT_EQ(ids[i].timestamp().time_since_epoch(), ms.time_since_epoch()) << "at " << i;
    if (i > 0) {
      ASSERT_LT(ids[i - 1], ids[i]) << "at " << i;
    }
  }
}

TEST(EventIdTest, UniqueAcrossFourThreadsAtFullSpeed) {
  constexpr std::size_t kThreads = 4;
  constexpr std::size_t kPerThread = 250'000;
  std::vector<std::vector<EventId>> ids(kThreads);
  std::vector<std::thread> threads;
  for (auto& mine : ids) {
    threads.emplace_back([&mine] {
      mine.reserve(kPerThread);
      for (std::size_t i = 0; i < kPerThread; ++i)
        mine.push_back(EventId::generate());
    });
  }
  for (auto& thread : threads)
    thread.join();

  std::vector<EventId> all;
  all.reserve(kThreads * kPerThread);
  for (const auto& mine : ids) {
    ASSERT_EQ(mine.size(), kPerThread);
    for (std::size_t i = 1; i < mine.size(); ++i)
      ASSERT_LT(mine[i - 1], mine[i]) << "at " << i;
    all.insert(all.end(), mine.begin(), mine.end());
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end()) << "a duplicate id";
}

TEST(EventIdTest, ThreadsStampingOneInstantMakeDistinctIds) {
  // Same millisecond and fraction on every thread: only the low 62 bits tell them apart.
  constexpr std::size_t kThreads = 4;
  constexpr std::size_t kPerThread = 100'000;
  std::vector<std::vector<EventId>> ids(kThreads);
  std::vector<std::thread> threads;
  for (auto& mine : ids) {
    threads.emplace_back([&mine] {
      mine.reserve(kPerThread);
      for (std::size_t i = 0; i < kPerThread; ++i)
        mine.push_back(EventId::generate(sample_time()));
    });
  }
  for (auto& thread : threads)
    thread.join();
  std::vector<EventId> all;
  for (const auto& mine : ids)
    all.insert(all.end(), mine.begin(), mine.end());
  ASSERT_EQ(all.size(), kThreads * kPerThread);
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end()) << "a duplicate id";
}

TEST(EventIdTest, AForkedChildDoesNotRepeatItsParentsIds) {
  // The child of fork() starts with a copy of the forking thread's generator state; both
  // then stamp ids with the same time.
  const auto at = detail::wall_now();
  (void)EventId::generate(at);
  int fds[2] = {-1, -1};
  ASSERT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const EventId id = EventId::generate(at);
    const std::uint64_t words[2] = {id.high(), id.low()};
    const bool sent = write(fds[1], words, sizeof words) == static_cast<ssize_t>(sizeof words);
    _exit(sent ? 0 : 1);
  }
  close(fds[1]);
  const EventId parents = EventId::generate(at);
  pollfd readable{fds[0], POLLIN, 0};
  const bool answered = poll(&readable, 1, /*timeout ms=*/10'000) == 1;
  std::uint64_t words[2] = {0, 0};
  const bool received =
      answered && read(fds[0], words, sizeof words) == static_cast<ssize_t>(sizeof words);
  close(fds[0]);
  if (!answered) kill(pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(received) << "the child sent no id within 10 s";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_NE(EventId(words[0], words[1]), parents);
}

TEST(EventIdTest, VersionSevenAndRfcVariant) {
  for (int i = 0; i < 1000; ++i) {
    const EventId id = EventId::generate();
    ASSERT_EQ((id.high() >> 12) & 0xf, 7u);
    ASSERT_EQ(id.low() >> 62, 0b10u);
    const std::string text = id.str();
    ASSERT_EQ(text[14], '7');
    ASSERT_TRUE(text[19] == '8' || text[19] == '9' || text[19] == 'a' || text[19] == 'b');
    ASSERT_FALSE(id.is_nil());
  }
}

TEST(EventIdTest, TimestampIsTheMillisecondGivenToGenerate) {
  std::vector<std::pair<system_clock::time_point, EventId>> made;
  on_fresh_thread([&] {
    auto at = sample_time();
    for (int i = 0; i < 50; ++i) {
      made.emplace_back(at, EventId::generate(at));
      at += 1'234'567ns;
    }
  });
  ASSERT_EQ(made.size(), 50u);
  for (const auto& [at, id] : made) {
    EXPECT_EQ(id.timestamp(), std::chrono::floor<std::chrono::milliseconds>(at));
  }
  const EventId now_id = EventId::generate();
  EXPECT_LE(std::chrono::abs(now_id.timestamp() - system_clock::now()), 1s);
}

TEST(EventIdTest, TextRoundTrip) {
  for (int i = 0; i < 1000; ++i) {
    const EventId id = EventId::generate();
    const std::string text = id.str();
    ASSERT_EQ(text.size(), 36u);
    ASSERT_EQ(EventId::parse(text), id);
    std::string upper = text;
    std::transform(upper.begin(), upper.end(), upper.begin(),
                   [](char c) { return c >= 'a' && c <= 'f' ? static_cast<char>(c - 32) : c; });
    ASSERT_EQ(EventId::parse(upper), id);
  }
  const EventId fixed(0x0123456789abcdefULL, 0xfedcba9876543210ULL);
  EXPECT_EQ(fixed.str(), "01234567-89ab-cdef-fedc-ba9876543210");
  EXPECT_EQ(EventId().str(), "00000000-0000-0000-0000-000000000000");
  EXPECT_TRUE(EventId().is_nil());
  std::ostringstream os;
  os << fixed;
  EXPECT_EQ(os.str(), fixed.str());
}

TEST(EventIdTest, WriteToWritesTheCanonicalTextAndNothingElse) {
  const EventId fixed(0x0123456789abcdefULL, 0xfedcba9876543210ULL);
  for (const EventId& id : {fixed, EventId(), EventId::generate()}) {
    std::array<char, EventId::kTextSize + 2> buffer{};
    buffer.fill('#');
    char* end = id.write_to(buffer.data());
    ASSERT_EQ(end, buffer.data() + EventId::kTextSize);
    EXPECT_EQ(std::string(buffer.data(), EventId::kTextSize), id.str());
    EXPECT_EQ(buffer[EventId::kTextSize], '#');  // no terminator, nothing past the text
    EXPECT_EQ(buffer[EventId::kTextSize + 1], '#');
  }
  EXPECT_EQ(EventId::kTextSize, fixed.str().size());
}

TEST(EventIdTest, ParseRejectsMalformedText) {
  const char* bad[] = {
      "",
      "01234567-89ab-cdef-fedc-ba987654321",    // too short
      "01234567-89ab-cdef-fedc-ba98765432100",  // too long
      "0123456789abcdeffedcba9876543210",       // no dashes
      "01234567+89ab-cdef-fedc-ba9876543210",   // wrong separator
      "0123456-789ab-cdef-fedc-ba9876543210",   // dash in the wrong place
      "01234567-89ab-cdef-fedc-ba987654321g",   // not hex
      " 1234567-89ab-cdef-fedc-ba9876543210",   // space
      "{1234567-89ab-cdef-fedc-ba987654321}",   // braces
      "01234567-89ab-cdef-fedc-ba98765432-0",   // dash among the digits
  };
  for (const char* text : bad)
    EXPECT_EQ(EventId::parse(text), std::nullopt) << text;
}

}  // namespace
}  // namespace emissions
