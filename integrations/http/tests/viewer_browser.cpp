// The viewer's browser test: serves the page while emitting, and runs
// browser/viewer_check.mjs (Node, puppeteer-core driving Debian's Chromium), which checks
// the page from its DOM. Protocol on the script's stdin/stdout: it prints READY once the
// live checks passed; this side then stops emitting, drains, and sends stats() as one JSON
// line; the script waits until the panels show exactly that, saves the screenshots and
// prints PASS (or FAIL <reason>).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "emissions/emissions.hpp"
#include "emissions/http/server.hpp"
#include "emissions/testing/faulty_adapter.hpp"

extern char** environ;

namespace emissions::http {
namespace {

// A child process with pipes on its stdin and stdout; killed and reaped by the destructor
// if still running.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv) {
    int in[2];
    int out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    std::vector<char*> args;
    for (const auto& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    if (posix_spawnp(&pid_, args[0], &actions, nullptr, args.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    to_ = in[1];
    from_ = out[0];
  }
  ~Child() {
    if (to_ >= 0) ::close(to_);
    if (from_ >= 0) ::close(from_);
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  [[nodiscard]] bool started() const { return pid_ > 0; }

  // The next line of the child's stdout, or empty at EOF or after `timeout`.
  std::string read_line(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (const auto nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return {};
      pollfd p{from_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char chunk[4096];
      const ssize_t n = ::read(from_, chunk, sizeof chunk);
      if (n <= 0) return {};
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }
  void write_line(const std::string& line) {
    const std::string data = line + "\n";
    (void)!::write(to_, data.data(), data.size());
  }
  // The exit status, waiting at most `timeout` (then -1).
  int wait(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  int to_ = -1;
  int from_ = -1;
  bool reaped_ = false;
  std::string buffer_;
};

class Sink final : public Adapter {
 public:
  std::string_view name() const override { return "orders"; }
  Status handle_events(std::span<const Event>) override { return {}; }
};

class PaymentsOnly final : public Adapter {
 public:
  std::string_view name() const override { return "payments"; }
  bool interested(const Event& e) const override { return e.name.view() == "payment_captured"; }
  Status handle_events(std::span<const Event>) override { return {}; }
};

// What the panel shows as a quantile: seconds, or null (nothing measured, or beyond the
// last bucket).
nlohmann::json quantile(const DeliveryLatency& l, double q) {
  const double v = l.quantile(q);
  if (l.count == 0 || std::isinf(v)) return nullptr;
  return v;
}

TEST(ViewerInBrowser, EventsFiltersPauseAndPanelsFromTheDom) {
  const std::filesystem::path script = EMISSIONS_HTTP_BROWSER_DIR "/viewer_check.mjs";
  const std::filesystem::path modules = EMISSIONS_HTTP_BROWSER_DIR "/node_modules/puppeteer-core";
  ASSERT_TRUE(std::filesystem::exists(modules))
      << "puppeteer-core is not installed: run `npm ci` in " EMISSIONS_HTTP_BROWSER_DIR
         " (scripts/install-deps.sh does)";
  ASSERT_TRUE(std::filesystem::exists(EMISSIONS_CHROMIUM)) << "no Chromium at " EMISSIONS_CHROMIUM;
  const std::filesystem::path out = EMISSIONS_HTTP_TEST_OUTPUT;
  std::filesystem::create_directories(out);
  std::filesystem::remove(out / "viewer.png");

  Config config;
  config.make_default = false;
  config.add_adapter(std::make_shared<Sink>());
  config.add_adapter(std::make_shared<PaymentsOnly>());
  auto flaky = std::make_shared<emissions::testing::FaultyAdapter>("webhooks");
  flaky->fail_every(4, {Errc::unavailable, "503 from the endpoint"})
      .fail_events([](const Event& e) { return e.payload.value("i", 0) % 50 == 7; },
                   {Errc::invalid_argument, "rejected"});
  config.add_adapter(flaky, {.retry = RetryPolicy{.max_attempts = 3,
                                                  .initial_backoff = std::chrono::milliseconds(5),
                                                  .max_backoff = std::chrono::milliseconds(10)}});
  auto server = watch(config, {.bearer_token = "browser-token"});
  Emitter emitter(std::move(config));
  ASSERT_TRUE(server->start(emitter).ok());

  std::atomic<bool> emitting{true};
  std::thread producer([&] {
    for (int i = 0; emitting.load(); ++i) {
      Transaction tx = emitter.start();
      const bool payment = i % 3 == 0;
      (void)tx.emit(payment ? "payment_captured" : "order_created",
                    {{"i", i}, {"note", "needle-" + std::to_string(i % 10)}, {"total", i * 1.5}});
      (void)tx.commit();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });

  const std::string url =
      "http://127.0.0.1:" + std::to_string(server->port()) + "/?access_token=browser-token";
  Child node({EMISSIONS_NODE, script.string(), "--url", url, "--chromium", EMISSIONS_CHROMIUM,
              "--out", out.string()});
  ASSERT_TRUE(node.started());
  const std::string ready = node.read_line(std::chrono::seconds(60));
  emitting.store(false);
  producer.join();
  ASSERT_EQ(ready, "READY") << "the live checks failed";

  ASSERT_TRUE(emitter.drain(std::chrono::seconds(10)).ok());
  nlohmann::json expected = nlohmann::json::array();
  for (const AdapterStats& a : emitter.stats().adapters)
    expected.push_back({{"name", a.name},
                        {"delivered", a.delivered},
                        {"failed", a.failed},
                        {"filtered", a.filtered},
                        {"dropped", a.dropped},
                        {"retried", a.retried},
                        {"dead_lettered", a.dead_lettered},
                        {"queued", a.queued},
                        {"latency_p50", quantile(a.latency, 0.5)},
                        {"latency_p99", quantile(a.latency, 0.99)}});
  node.write_line(expected.dump());
  EXPECT_EQ(node.read_line(std::chrono::seconds(30)), "PASS");
  EXPECT_EQ(node.wait(std::chrono::seconds(20)), 0);
  EXPECT_TRUE(std::filesystem::exists(out / "viewer.png"));
  EXPECT_TRUE(server->stop().ok());
}

}  // namespace
}  // namespace emissions::http
