#include "progress.hpp"

#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>

#include <sys/ioctl.h>
#include <unistd.h>

#include "report.hpp"

namespace demo {
namespace {

constexpr int kBarWidth = 30;

std::string bar(double share) {
  const double clamped = share < 0.0 ? 0.0 : (share > 1.0 ? 1.0 : share);
  const int filled = static_cast<int>(clamped * kBarWidth);
  return "[" + std::string(static_cast<std::size_t>(filled), '#') +
         std::string(static_cast<std::size_t>(kBarWidth - filled), '.') + "] ";
}

std::string percent(double share) {
  const double clamped = share < 0.0 ? 0.0 : (share > 1.0 ? 1.0 : share);
  const std::string pct = std::to_string(static_cast<int>(clamped * 100));
  return std::string(3 - pct.size(), ' ') + pct + "%";
}

// The adapters with a non-zero count, largest first (what a narrow terminal cuts off is
// the least): "slow_archive 41,200, json_lines 950".
std::string nonzero_counts(std::vector<AdapterCount> counts) {
  std::stable_sort(counts.begin(), counts.end(), [](const AdapterCount& a, const AdapterCount& b) {
    return a.events > b.events;
  });
  std::string out;
  for (const AdapterCount& c : counts) {
    if (c.events == 0) break;
    out += (out.empty() ? "" : ", ") + c.name + " " + with_commas(c.events);
  }
  return out;
}

// The terminal's width, or 0 when unknown. Read at every draw: the window may be resized.
std::size_t terminal_columns() {
  winsize size{};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &size) != 0) return 0;
  return size.ws_col;
}

}  // namespace

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
    sample_and_draw(false);
    lock.lock();
  }
  lock.unlock();
  sample_and_draw(true);
}

void ProgressBar::sample_and_draw(bool final) {
  ::flockfile(stderr);
  draw(sample_(), final);
  ::funlockfile(stderr);
}

void ProgressBar::draw(const ProgressSample& s, bool final) {
  const auto now = std::chrono::steady_clock::now();
  if (s.phase == Phase::recovering) started_ = now;  // the rate counts emitting time only
  // A run shorter than one period prints nothing rather than a lone final line in a log.
  if (!tty_ && final && !drew_) return;

  const double seconds = std::chrono::duration<double>(now - started_).count();
  const double share =
      s.target == 0 ? 1.0 : static_cast<double>(s.emitted) / static_cast<double>(s.target);
  const char* phase = s.phase == Phase::recovering ? "recovering"
                      : s.phase == Phase::draining ? "draining"
                                                   : "emitting";
  const std::string what = std::string(s.interrupted ? "interrupted, " : "") + phase;
  const std::string rate =
      seconds > 0 ? format_rate(static_cast<double>(s.emitted) / seconds) : "-";

  std::vector<std::string> lines;
  lines.push_back((tty_ ? bar(share) : "emissions-demo: ") + percent(share) + "  " +
                  with_commas(s.emitted) + "/" + with_commas(s.target) + " events  " + rate +
                  " ev/s  queued " + with_commas(s.queued) + "  " + what);
  if (s.spool) {
    const SpoolSample& spool = *s.spool;
    const double used = spool.max_bytes == 0 ? 0.0
                                             : static_cast<double>(spool.bytes) /
                                                   static_cast<double>(spool.max_bytes);
    std::string line = (tty_ ? bar(used) : "emissions-demo: spool ") + percent(used) + "  " +
                       format_bytes(spool.bytes) + " of " + format_bytes(spool.max_bytes) +
                       " on disk  ";
    const std::string counts = nonzero_counts(spool.adapters);
    if (s.phase == Phase::recovering) {
      line += "an earlier run's backlog, delivered so far: " + (counts.empty() ? "0" : counts);
    } else {
      line += "backlog " + (counts.empty() ? "0" : counts);
    }
    lines.push_back(std::move(line));
  }

  std::string out;
  if (tty_) {
    // The interrupt message (printed with stderr locked, so never inside a draw) moved the
    // cursor below the block: start a new one rather than overwrite the message.
    if (s.interrupted && !drew_interrupted_) lines_on_screen_ = 0;
    if (lines_on_screen_ > 1) out += "\x1b[" + std::to_string(lines_on_screen_ - 1) + "A";
    out += '\r';
    // A line longer than the terminal would wrap, and the cursor could not get back to it.
    const std::size_t columns = terminal_columns();
    for (std::size_t i = 0; i < lines.size(); ++i) {
      if (columns > 1 && lines[i].size() >= columns) lines[i].resize(columns - 1);
      out += lines[i] + "\x1b[K";  // clear what a longer previous line left behind
      if (i + 1 < lines.size()) out += '\n';
    }
    lines_on_screen_ = static_cast<int>(lines.size());
    if (final) {
      out += '\n';
      lines_on_screen_ = 0;
    }
  } else {
    for (const std::string& line : lines)
      out += line + '\n';
  }
  std::fputs(out.c_str(), stderr);
  std::fflush(stderr);
  drew_ = true;
  drew_interrupted_ = s.interrupted;
}

}  // namespace demo
