// A progress bar on stderr, drawn by its own thread while the demo runs.
//
// On a terminal the bar is redrawn in place ten times a second; otherwise (a log, a CI job)
// one plain line is written per second. With --spool a second line shows the spool: bytes
// on disk against max_bytes and each adapter's backlog. stop() ends with a newline, so what
// is printed afterwards starts on a clean line.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "spool_backlog.hpp"

namespace demo {

enum class Phase {
  recovering,  // with --spool: delivering what an earlier run left, before the first order
  emitting,    // the request threads place orders
  draining,    // the request threads are done; the adapters catch up
};

struct SpoolSample {
  std::uint64_t bytes = 0;      // segment files on disk (EmitterStats::spool_bytes)
  std::uint64_t max_bytes = 0;  // SpoolOptions::max_bytes
  // Recovering: per adapter, the events of the earlier run handled so far. Otherwise: per
  // adapter, the events this run committed that it has not handled yet (SpoolBacklog).
  std::vector<AdapterCount> adapters = {};
};

struct ProgressSample {
  std::uint64_t emitted = 0;  // events emitted so far
  std::uint64_t target = 0;   // events to emit in total
  std::uint64_t queued = 0;   // events in the adapters' in-memory queues together
  Phase phase = Phase::emitting;
  bool interrupted = false;  // Ctrl-C: the request threads start no new orders
  std::optional<SpoolSample> spool = {};
};

class ProgressBar {
 public:
  // Starts the drawing thread; `sample` is called from it and must be thread-safe. It is
  // called with stderr locked (flockfile), so that it and the lines drawn from it are one
  // step for another thread that locks stderr to write (InterruptWatcher's message).
  explicit ProgressBar(std::function<ProgressSample()> sample);
  // stop().
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // Draws the last state, ends the line and joins the thread. Idempotent.
  void stop();

 private:
  void run();
  void sample_and_draw(bool final);
  void draw(const ProgressSample& s, bool final);

  std::function<ProgressSample()> sample_;
  const bool tty_;
  // When the rate's clock started: the first sample that is not `recovering` (drawing
  // thread only once it runs).
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;          // guarded by mutex_
  bool drew_ = false;              // something was printed (drawing thread only)
  int lines_on_screen_ = 0;        // terminal: lines of the block the next draw overwrites
  bool drew_interrupted_ = false;  // the last draw showed `interrupted`
  std::thread thread_;             // last: starts once everything above is ready
};

}  // namespace demo
