// A progress bar on stderr, drawn by its own thread while the simulation runs.
//
// On a terminal the bar is redrawn in place ten times a second; otherwise (a log, a CI job)
// one plain line is written per second. stop() ends with a newline, so what is printed
// afterwards starts on a clean line.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace demo {

struct ProgressSample {
  std::uint64_t emitted = 0;  // events emitted so far
  std::uint64_t target = 0;   // events to emit in total
  std::uint64_t backlog = 0;  // events queued in front of all adapters together
  bool draining = false;      // the request threads are done; the adapters catch up
  bool interrupted = false;   // Ctrl-C: the request threads start no new orders
};

class ProgressBar {
 public:
  // Starts the drawing thread; `sample` is called from it and must be thread-safe.
  explicit ProgressBar(std::function<ProgressSample()> sample);
  // stop().
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // Draws the last state, ends the line and joins the thread. Idempotent.
  void stop();

 private:
  void run();
  void draw(const ProgressSample& s, bool final);

  std::function<ProgressSample()> sample_;
  const bool tty_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by mutex_
  bool drew_ = false;      // something is on the current line (drawing thread only)
  std::thread thread_;     // last: starts once everything above is ready
};

}  // namespace demo
