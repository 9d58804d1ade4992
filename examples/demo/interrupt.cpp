#include "interrupt.hpp"

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <system_error>

#include <pthread.h>

namespace demo {
namespace {

sigset_t watched_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

// Blocks `set` in the calling thread; returns the mask it replaced.
sigset_t block(const sigset_t& set) {
  sigset_t previous;
  if (const int error = ::pthread_sigmask(SIG_BLOCK, &set, &previous); error != 0) {
    throw std::system_error(error, std::generic_category(), "pthread_sigmask");
  }
  return previous;
}

const char* name_of(int signo) {
  return signo == SIGINT ? "SIGINT" : "SIGTERM";
}

}  // namespace

InterruptWatcher::InterruptWatcher()
    : watched_(watched_signals()),
      previous_mask_(block(watched_)),
      thread_([this](const std::stop_token& own) { watch(own); }) {}

InterruptWatcher::~InterruptWatcher() {
  thread_.request_stop();
  thread_.join();
  ::pthread_sigmask(SIG_SETMASK, &previous_mask_, nullptr);
}

void InterruptWatcher::watch(const std::stop_token& own) {
  // How long a wait lasts before the loop looks at `own` again: the destructor's latency.
  constexpr timespec kTick{.tv_sec = 0, .tv_nsec = 100'000'000};
  while (!own.stop_requested()) {
    const int got = ::sigtimedwait(&watched_, nullptr, &kTick);
    if (got < 0) continue;  // EAGAIN: no signal within kTick; EINTR: try again
    if (signal_.load(std::memory_order_relaxed) == 0) {
      // With stderr locked, the progress bar (which samples signal() with it locked too)
      // either drew before both or sees the signal after the message: it never redraws
      // its lines over the message.
      ::flockfile(stderr);
      signal_.store(got, std::memory_order_release);
      std::fprintf(stderr,
                   "\nemissions-demo: %s: no new orders; draining what was committed, then the "
                   "summary (press Ctrl-C again to quit at once)\n",
                   name_of(got));
      ::funlockfile(stderr);
      interrupted_.request_stop();
    } else {
      std::fprintf(stderr, "\nemissions-demo: %s again: quitting without a summary\n",
                   name_of(got));
      std::_Exit(128 + got);
    }
  }
}

}  // namespace demo
