// Internal: what the server reads of the Emitter, and for how long. The Emitter may be
// destroyed before Server::stop(): its shutdown terminates the server's adapter, which
// detaches the Emitter here after a last snapshot; from then on the server serves that
// snapshot and never touches the Emitter again. No Boost here.
#pragma once

#include <mutex>

#include "emissions/emitter.hpp"

namespace emissions::http::detail {

class EmitterView {
 public:
  struct Snapshot {
    EmitterStats stats;
    bool ready = false;  // the emitter accepts commits
  };

  // Server::start(): reads `emitter` from now on, unless it was detached already (its
  // adapter was terminated before start()): then only a snapshot is taken, now.
  void attach(Emitter& emitter);
  // The server's adapter is terminated (the Emitter shuts down): a last snapshot, then the
  // Emitter is never read again. Idempotent. Called on the thread that shuts down.
  void detach_after_snapshot() noexcept;
  // The server's adapter is destroyed: the Emitter may be gone already (nothing is read);
  // the last snapshot stays. Idempotent.
  void detach() noexcept;

  // The Emitter's counters now, or the last snapshot (ready false) once detached or before
  // attach(). Holds the view's lock while reading the Emitter (library code only: stats()
  // and closed() run no user code), so detach*() waits for a read under way.
  [[nodiscard]] Snapshot read();

 private:
  std::mutex mu_;
  Emitter* emitter_ = nullptr;
  bool detached_ = false;
  EmitterStats last_;
};

}  // namespace emissions::http::detail
