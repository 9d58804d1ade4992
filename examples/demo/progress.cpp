#include "progress.hpp"

#include <cstdio>
#include <string>
#include <utility>

#include <unistd.h>

#include "report.hpp"

namespace demo {

ProgressBar::ProgressBar(std::function<ProgressSample()> sample)
    : sample_(std::move(sample)), tty_(::isatty(STDERR_FILENO) == 1), thread_([this] { run(); }) {}

ProgressBar::~ProgressBar() {
  stop();
}

void ProgressBar::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ProgressBar::run() {
  const auto period = tty_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(1'000);
  std::unique_lock lock(mutex_);
  for (;;) {
    if (wake_.wait_for(lock, period, [this] { return stopping_; })) break;
    lock.unlock();
    draw(sample_(), false);
    lock.lock();
  }
  lock.unlock();
  draw(sample_(), true);
}

void ProgressBar::draw(const ProgressSample& s, bool final) {
  // A run shorter than one period prints nothing rather than a lone final line in a log.
  if (!tty_ && final && !drew_) return;

  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  const double share =
      s.target == 0 ? 1.0 : static_cast<double>(s.emitted) / static_cast<double>(s.target);
  const double clamped = share > 1.0 ? 1.0 : share;
  const std::string what =
      std::string(s.interrupted ? "interrupted, " : "") + (s.draining ? "draining" : "emitting");
  const std::string rate =
      seconds > 0 ? format_rate(static_cast<double>(s.emitted) / seconds) : "-";

  std::string line;
  if (tty_) {
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(clamped * kWidth);
    line = "\r[" + std::string(static_cast<std::size_t>(filled), '#') +
           std::string(static_cast<std::size_t>(kWidth - filled), '.') + "] ";
  } else {
    line = "emissions-demo: ";
  }
  const std::string pct = std::to_string(static_cast<int>(clamped * 100));
  line += std::string(3 - pct.size(), ' ') + pct + "%  " + with_commas(s.emitted) + "/" +
          with_commas(s.target) + " events  " + rate + " ev/s  backlog " + with_commas(s.backlog) +
          "  " + what;
  if (tty_) {
    line += "\x1b[K";  // clear what a longer previous line left behind
    if (final) line += '\n';
  } else {
    line += '\n';
  }
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  drew_ = true;
}

}  // namespace demo
