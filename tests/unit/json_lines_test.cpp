// The JsonLines adapter: one envelope per line, appending, errors at construction and at
// write time, standard output, and end to end through an Emitter.
#include "emissions/adapters/json_lines.hpp"

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "emissions/emitter.hpp"
#include "emissions/event.hpp"
#include "emissions/telemetry.hpp"
#include "emissions/testing.hpp"

namespace emissions::adapters {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

Event make_event(EventName name, nlohmann::json payload) {
  Event e;
  e.name = name;
  e.payload = std::move(payload);
  e.metadata = {{"source", "test"}};
  e.emitted_at = std::chrono::system_clock::now();
  e.id = EventId::generate(e.emitted_at);
  return e;
}

std::vector<Event> make_batch(int n, const std::string& prefix = "event") {
  std::vector<Event> batch;
  for (int i = 0; i < n; ++i)
    batch.push_back(make_event(prefix + "_" + std::to_string(i), {{"i", i}}));
  return batch;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The file's lines, without their '\n'; fails the test if the file does not end in '\n'.
std::vector<std::string> read_lines(const fs::path& path) {
  const std::string text = read_file(path);
  std::vector<std::string> lines;
  if (text.empty()) return lines;
  EXPECT_EQ(text.back(), '\n') << "the file ends mid-line";
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t end = text.find('\n', start);
    if (end == std::string::npos) {
      lines.push_back(text.substr(start));
      break;
    }
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

class JsonLinesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "json_lines_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  fs::path dir_;
};

TEST_F(JsonLinesTest, WritesOneEnvelopePerLine) {
  const fs::path path = dir_ / "events.jsonl";
  JsonLines adapter(path.string());
  EXPECT_EQ(adapter.name(), "json_lines");
  EXPECT_EQ(adapter.path(), path.string());

  std::vector<Event> batch = make_batch(3);
  batch.push_back(make_event("with \"quotes\"\n and caf\xc3\xa9", {{"text", "line\nbreak"}}));
  ASSERT_TRUE(emissions::testing::deliver_now(adapter, batch).ok());
  (void)adapter.terminate(emissions::Deadline::max());

  const std::vector<std::string> lines = read_lines(path);
  ASSERT_EQ(lines.size(), batch.size());
  for (std::size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i], serialize(batch[i]));
    const nlohmann::json parsed = nlohmann::json::parse(lines[i]);
    EXPECT_EQ(parsed, envelope(batch[i]));
    EXPECT_EQ(parsed["id"], batch[i].id.str());
    EXPECT_EQ(parsed["name"], batch[i].name.str());
    EXPECT_EQ(parsed["payload"], batch[i].payload);
    EXPECT_EQ(parsed["metadata"], (nlohmann::json{{"source", "test"}}));
    EXPECT_EQ(parsed["emitted_at"], format_timestamp(batch[i].emitted_at));
  }
}

TEST_F(JsonLinesTest, EachBatchIsVisibleBeforeTheNextOne) {
  const fs::path path = dir_ / "events.jsonl";
  JsonLines adapter(path.string());
  ASSERT_TRUE(emissions::testing::deliver_now(adapter, make_batch(2)).ok());
  EXPECT_EQ(read_lines(path).size(), 2u);
  ASSERT_TRUE(emissions::testing::deliver_now(adapter, make_batch(3)).ok());
  EXPECT_EQ(read_lines(path).size(), 5u);
}

TEST_F(JsonLinesTest, AppendsToAnExistingFile) {
  const fs::path path = dir_ / "events.jsonl";
  std::ofstream(path) << "{\"existing\":true}\n";
  {
    JsonLines first(path.string());
    ASSERT_TRUE(emissions::testing::deliver_now(first, make_batch(2, "first")).ok());
  }
  {
    JsonLines second(JsonLinesOptions{.path = path.string(), .name = "second"});
    EXPECT_EQ(second.name(), "second");
    ASSERT_TRUE(emissions::testing::deliver_now(second, make_batch(1, "second")).ok());
  }
  const std::vector<std::string> lines = read_lines(path);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], "{\"existing\":true}");
  EXPECT_EQ(nlohmann::json::parse(lines[1])["name"], "first_0");
  EXPECT_EQ(nlohmann::json::parse(lines[2])["name"], "first_1");
  EXPECT_EQ(nlohmann::json::parse(lines[3])["name"], "second_0");
}

TEST_F(JsonLinesTest, BufferedModeWritesAtTheThresholdAndAtTerminate) {
  const fs::path path = dir_ / "events.jsonl";
  const std::size_t line_size = serialize(make_batch(1)[0]).size() + 1;
  JsonLines adapter(JsonLinesOptions{
      .path = path.string(), .flush_each_batch = false, .buffer_bytes = line_size * 5});
  ASSERT_TRUE(emissions::testing::deliver_now(adapter, make_batch(2)).ok());
  EXPECT_EQ(read_file(path), "");  // below the threshold: held in memory
  ASSERT_TRUE(emissions::testing::deliver_now(adapter, make_batch(4)).ok());
  EXPECT_EQ(read_lines(path).size(), 6u);  // threshold crossed: everything pending written
  ASSERT_TRUE(emissions::testing::deliver_now(adapter, make_batch(1)).ok());
  EXPECT_EQ(read_lines(path).size(), 6u);
  (void)adapter.terminate(emissions::Deadline::max());
  EXPECT_EQ(read_lines(path).size(), 7u);
}

TEST_F(JsonLinesTest, DestructorWritesWhatIsPending) {
  const fs::path path = dir_ / "events.jsonl";
  {
    JsonLines adapter(JsonLinesOptions{.path = path.string(), .flush_each_batch = false});
    ASSERT_TRUE(emissions::testing::deliver_now(adapter, make_batch(3)).ok());
    EXPECT_EQ(read_file(path), "");
  }
  EXPECT_EQ(read_lines(path).size(), 3u);
}

TEST_F(JsonLinesTest, BatchesAfterTerminateAreRefused) {
  const fs::path path = dir_ / "events.jsonl";
  JsonLines adapter(path.string());
  (void)adapter.terminate(emissions::Deadline::max());
  (void)adapter.terminate(emissions::Deadline::max());  // idempotent
  const Status s = emissions::testing::deliver_now(adapter, make_batch(1));
  EXPECT_EQ(s.code(), Errc::closed);
  EXPECT_EQ(read_file(path), "");
}

TEST_F(JsonLinesTest, MissingDirectoryIsAConfigErrorNamingPathAndCause) {
  const std::string path = (dir_ / "no_such_dir" / "events.jsonl").string();
  try {
    JsonLines adapter(path);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("No such file or directory"), std::string::npos)
        << e.what();
  }
}

TEST_F(JsonLinesTest, ADirectoryIsAConfigError) {
  try {
    JsonLines adapter(dir_.string());
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(dir_.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Is a directory"), std::string::npos) << e.what();
  }
}

TEST_F(JsonLinesTest, AReadOnlyFileIsAConfigError) {
  if (::geteuid() == 0) GTEST_SKIP() << "root may write to read-only files";
  const fs::path path = dir_ / "read_only.jsonl";
  std::ofstream(path) << "";
  fs::permissions(path, fs::perms::owner_read);
  try {
    JsonLines adapter(path.string());
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Permission denied"), std::string::npos) << e.what();
  }
}

TEST(JsonLinesOptionsTest, InvalidOptionsAreConfigErrors) {
  EXPECT_THROW(JsonLines{JsonLinesOptions{}}, ConfigError);
  EXPECT_THROW((JsonLines{JsonLinesOptions{.path = "-", .name = ""}}), ConfigError);
  EXPECT_THROW(
      (JsonLines{JsonLinesOptions{.path = "-", .flush_each_batch = false, .buffer_bytes = 0}}),
      ConfigError);
}

TEST(JsonLinesErrors, AFullDeviceIsAnUnavailableStatusNotAThrow) {
  JsonLines adapter("/dev/full");
  Status s;
  EXPECT_NO_THROW(s = emissions::testing::deliver_now(adapter, make_batch(3)));
  EXPECT_EQ(s.code(), Errc::unavailable);
  EXPECT_NE(s.message().find("/dev/full"), std::string::npos) << s.to_string();
  EXPECT_NE(s.message().find("No space left on device"), std::string::npos) << s.to_string();
  // Still usable (and still failing) afterwards.
  EXPECT_EQ(emissions::testing::deliver_now(adapter, make_batch(1)).code(), Errc::unavailable);
}

TEST(JsonLinesErrors, AFailedFinalWriteIsReportedThroughTelemetry) {
  std::vector<nlohmann::json> reports;
  ASSERT_TRUE(telemetry::attach("json-lines-test", {"emissions", "adapter", "error"},
                                [&reports](const auto&, const nlohmann::json& measurements,
                                           const nlohmann::json& metadata) {
                                  reports.push_back(metadata);
                                  EXPECT_TRUE(measurements.contains("duration"));
                                })
                  .ok());
  {
    JsonLines adapter(JsonLinesOptions{.path = "/dev/full", .flush_each_batch = false});
    ASSERT_TRUE(emissions::testing::deliver_now(adapter, make_batch(3)).ok());  // held in memory
    (void)adapter.terminate(emissions::Deadline::max());  // the write fails here
  }
  ASSERT_TRUE(telemetry::detach("json-lines-test").ok());
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0]["adapter"], "json_lines");
  EXPECT_EQ(reports[0]["event_count"], 3);
  EXPECT_NE(reports[0]["reason"].get<std::string>().find("No space left on device"),
            std::string::npos)
      << reports[0];
}

TEST(JsonLinesErrors, AClosedPipeIsAnErrorAndNoSigpipe) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const std::string path = "/dev/fd/" + std::to_string(fds[1]);
  JsonLines adapter(path);
  ::close(fds[1]);
  ::close(fds[0]);  // no reader left
  const Status s =
      emissions::testing::deliver_now(adapter, make_batch(2));  // would kill the process on SIGPIPE
  EXPECT_EQ(s.code(), Errc::unavailable);
  EXPECT_NE(s.message().find("Broken pipe"), std::string::npos) << s.to_string();
  sigset_t pending;
  sigemptyset(&pending);
  ASSERT_EQ(::sigpending(&pending), 0);
  EXPECT_EQ(sigismember(&pending, SIGPIPE), 0) << "a SIGPIPE was left pending";
}

TEST_F(JsonLinesTest, AnUnserializableEventIsSkippedAndReported) {
  const fs::path path = dir_ / "events.jsonl";
  JsonLines adapter(path.string());
  std::vector<Event> batch = make_batch(3);
  batch[1].payload = {{"text", "invalid \xff utf-8"}};
  const Status s = emissions::testing::deliver_now(adapter, batch);
  EXPECT_EQ(s.code(), Errc::invalid_argument);
  EXPECT_NE(s.message().find(batch[1].id.str()), std::string::npos) << s.to_string();
  const std::vector<std::string> lines = read_lines(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], serialize(batch[0]));
  EXPECT_EQ(lines[1], serialize(batch[2]));
}

TEST_F(JsonLinesTest, AfterAPartialWriteTheNextBatchStartsOnAFreshLine) {
  // A file size limit makes write(2) stop part-way through a line (EFBIG).
  const fs::path path = dir_ / "events.jsonl";
  JsonLines adapter(path.string());
  const std::vector<Event> first = make_batch(3, "first");
  ASSERT_TRUE(emissions::testing::deliver_now(adapter, first).ok());
  const auto written = static_cast<rlim_t>(fs::file_size(path));

  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto* const saved_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit limited = saved;
  limited.rlim_cur = written + 100;  // room for part of the next line only
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limited), 0);
  const Status failed = emissions::testing::deliver_now(adapter, make_batch(3, "second"));
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &saved), 0);
  std::signal(SIGXFSZ, saved_handler);
  EXPECT_EQ(failed.code(), Errc::unavailable) << failed.to_string();

  const std::vector<Event> third = make_batch(2, "third");
  ASSERT_TRUE(emissions::testing::deliver_now(adapter, third).ok());
  const std::vector<std::string> lines = read_lines(path);
  ASSERT_EQ(lines.size(), 6u);  // 3 whole, 1 fragment, 2 whole
  EXPECT_EQ(lines[0], serialize(first[0]));
  EXPECT_EQ(lines[3].size(), 100u);
  EXPECT_FALSE(nlohmann::json::accept(lines[3]));
  EXPECT_EQ(lines[4], serialize(third[0]));
  EXPECT_EQ(lines[5], serialize(third[1]));
}

TEST_F(JsonLinesTest, StandardOutputUsesItsOwnDescriptor) {
  const fs::path path = dir_ / "stdout.jsonl";
  const int file = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(file, 0);
  std::fflush(stdout);
  const int saved_stdout = ::dup(STDOUT_FILENO);
  ASSERT_GE(saved_stdout, 0);
  ASSERT_EQ(::dup2(file, STDOUT_FILENO), STDOUT_FILENO);
  std::unique_ptr<JsonLines> adapter;
  try {
    adapter = std::make_unique<JsonLines>("-");
  } catch (...) {
    ::dup2(saved_stdout, STDOUT_FILENO);
    throw;
  }
  // Standard output goes back to the terminal; the adapter keeps writing to its copy.
  ASSERT_EQ(::dup2(saved_stdout, STDOUT_FILENO), STDOUT_FILENO);
  ::close(saved_stdout);
  ::close(file);

  const std::vector<Event> batch = make_batch(2);
  ASSERT_TRUE(emissions::testing::deliver_now(*adapter, batch).ok());
  (void)adapter->terminate(emissions::Deadline::max());
  const std::vector<std::string> lines = read_lines(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1], serialize(batch[1]));
  // terminate() closed the copy, not file descriptor 1.
  EXPECT_NE(::fcntl(STDOUT_FILENO, F_GETFD), -1);
}

TEST_F(JsonLinesTest, EndToEndThroughAnEmitter) {
  const fs::path path = dir_ / "events.jsonl";
  auto capture = std::make_shared<testing::TestAdapter>();
  Config config;
  config.make_default = false;
  config.add_adapter(std::make_shared<JsonLines>(path.string())).add_adapter(capture);
  {
    Emitter emitter(std::move(config));
    Transaction committed = emitter.start();
    ASSERT_TRUE(committed.emit("order_created", {{"id", 1}}, {{"source", "api"}}).ok());
    ASSERT_TRUE(committed.emit("order_paid", {{"id", 1}, {"total", 9.5}}).ok());
    ASSERT_TRUE(committed.commit().ok());
    {
      Transaction abandoned = emitter.start();
      ASSERT_TRUE(abandoned.emit("order_rejected", {{"id", 2}}).ok());
      abandoned.terminate();
    }
    ASSERT_TRUE(emitter.drain(5s).ok());

    std::vector<std::string> lines = read_lines(path);
    ASSERT_EQ(lines.size(), 2u);
    const std::vector<Event> delivered = capture->events();
    ASSERT_EQ(delivered.size(), 2u);
    for (std::size_t i = 0; i < 2; ++i)
      EXPECT_EQ(lines[i], serialize(delivered[i]));
    const nlohmann::json first = nlohmann::json::parse(lines[0]);
    EXPECT_EQ(first["name"], "order_created");
    EXPECT_EQ(first["payload"], (nlohmann::json{{"id", 1}}));
    EXPECT_EQ(first["metadata"], (nlohmann::json{{"source", "api"}}));
    EXPECT_EQ(nlohmann::json::parse(lines[1])["metadata"], nlohmann::json::object());

    const EmitterStats stats = emitter.stats();
    ASSERT_EQ(stats.adapters.size(), 2u);
    EXPECT_EQ(stats.adapters[0].name, "json_lines");
    EXPECT_EQ(stats.adapters[0].delivered, 2u);
    EXPECT_EQ(stats.adapters[0].failed, 0u);
  }
  EXPECT_EQ(read_lines(path).size(), 2u);  // shutdown terminated the adapter cleanly
}

TEST(JsonLinesEndToEnd, WriteFailuresAreCountedAsFailed) {
  Config config;
  config.make_default = false;
  config.pipeline.retry.max_attempts = 1;  // a full disk is retriable: count it once
  config.add_adapter(std::make_shared<JsonLines>("/dev/full"));
  Emitter emitter(std::move(config));
  Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("order_created", {{"id", 1}}).ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(emitter.drain(5s).ok());
  const EmitterStats stats = emitter.stats();
  ASSERT_EQ(stats.adapters.size(), 1u);
  EXPECT_EQ(stats.adapters[0].failed, 1u);
  EXPECT_EQ(stats.adapters[0].delivered, 0u);
}

}  // namespace
}  // namespace emissions::adapters

namespace emissions::adapters {
namespace {

TEST_F(JsonLinesTest, OneBadEventFailsAloneWhileTheOthersCountAsDelivered) {
  // Defect 9: one unserializable event in a batch wrote the others but counted all failed.
  const fs::path path = dir_ / "events.jsonl";
  Config config;
  config.make_default = false;
  config.add_adapter(std::make_shared<JsonLines>(path.string()));
  Emitter emitter(std::move(config));
  Transaction tx = emitter.start();
  ASSERT_TRUE(tx.emit("ok", 1).ok());
  ASSERT_TRUE(tx.emit("bad", {{"text", "invalid \xff utf-8"}}).ok());
  ASSERT_TRUE(tx.emit("ok", 2).ok());
  ASSERT_TRUE(tx.commit().ok());
  ASSERT_TRUE(emitter.drain(5s).ok());
  EXPECT_EQ(read_lines(path).size(), 2u);
  const EmitterStats stats = emitter.stats();
  EXPECT_EQ(stats.adapters[0].delivered, 2u);
  EXPECT_EQ(stats.adapters[0].failed, 1u);
}

TEST_F(JsonLinesTest, BufferedEventsCountAsDeliveredOnceWrittenAndDrainWritesThem) {
  // Defect 9: with flush_each_batch = false, events counted as delivered before they were
  // written, and drain() did not write them.
  const fs::path path = dir_ / "events.jsonl";
  Config config;
  config.make_default = false;
  config.add_adapter(std::make_shared<JsonLines>(
      JsonLinesOptions{.path = path.string(), .flush_each_batch = false, .buffer_bytes = 1 << 20}));
  Emitter emitter(std::move(config));
  for (int i = 0; i < 5; ++i) {
    Transaction tx = emitter.start();
    ASSERT_TRUE(tx.emit("e", i).ok());
    ASSERT_TRUE(tx.commit().ok());
  }
  std::this_thread::sleep_for(50ms);  // handed over by now, still in memory
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 0u);
  EXPECT_EQ(read_lines(path).size(), 0u);
  ASSERT_TRUE(emitter.drain(5s).ok());
  EXPECT_EQ(read_lines(path).size(), 5u);
  EXPECT_EQ(emitter.stats().adapters[0].delivered, 5u);
}

TEST(JsonLinesEndToEnd, ABufferedWriterOnAFullDiskShutsDownWithTheWriteErrorNotATimeout) {
  // The buffered lines are written by drain's flush(), which fails: shutdown() reported
  // that as "shutdown timed out after 5000 ms" (at once) instead of the write error.
  Config config;
  config.make_default = false;
  config.pipeline.retry.max_attempts = 1;  // a full disk is retriable: count it once
  config.add_adapter(std::make_shared<JsonLines>(
      JsonLinesOptions{.path = "/dev/full", .flush_each_batch = false}));
  Emitter emitter(std::move(config));
  Transaction tx = emitter.start();
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(tx.emit("e", i).ok());
  ASSERT_TRUE(tx.commit().ok());
  const Status down = emitter.shutdown(5s);
  EXPECT_EQ(down.code(), Errc::unavailable) << down.to_string();
  EXPECT_NE(down.message().find("No space left on device"), std::string::npos) << down.to_string();
  const EmitterStats stats = emitter.stats();
  EXPECT_EQ(stats.adapters[0].failed, 3u);
  EXPECT_EQ(stats.adapters[0].dropped, 0u);
}

}  // namespace
}  // namespace emissions::adapters
