/// @file
/// emissions/http/scope.hpp: commit a request's events when its response is a success.
///
/// A RequestScope opens this thread's ambient buffer (emissions/ambient.hpp) for one
/// request; the handler emits into it with emissions::emit(); finish(status) commits when
/// the status is 2xx and discards the events otherwise. A scope destroyed unfinished (the
/// handler threw) discards them too. No web framework header: the helpers in
/// emissions/http/httplib.hpp and emissions/http/beast.hpp build on it.
///
/// @code
///   emissions::http::RequestScope scope;  // before the handler runs
///   (void)emissions::emit("order_created", {{"id", id}});
///   int status = save(order) ? 201 : 409;
///   if (auto s = scope.finish(status); !s.ok()) log(s.to_string());
/// @endcode
///
/// Thread-safety: one request on one thread. The scope must be finished (or destroyed) on
/// the thread that made it, because the ambient buffer is per thread.
#pragma once

#include "emissions/status.hpp"

namespace emissions::http {

/// The events of one HTTP request, committed on a 2xx response; see the file comment.
class RequestScope {
 public:
  /// Starts this thread's ambient buffer (emissions::start()). When that fails (no default
  /// emitter, one already active on this thread, the emitter is shut down), the scope is
  /// inactive: start_status() says why and finish() returns it.
  RequestScope();
  /// Terminates the buffer if finish() was not called (the handler threw or returned early).
  ~RequestScope();
  RequestScope(const RequestScope&) = delete;
  RequestScope& operator=(const RequestScope&) = delete;

  /// Commits the buffered events when `http_status` is in [200, 300), discards them
  /// otherwise (then returns ok). Returns the commit's error (overloaded, closed): the
  /// events are discarded then as well, since the response is already decided. A second
  /// call returns invalid_argument and does nothing.
  Status finish(int http_status);

  /// What starting the buffer returned (ok when the scope is active).
  [[nodiscard]] const Status& start_status() const noexcept { return start_; }
  /// Whether finish() was called.
  [[nodiscard]] bool finished() const noexcept { return finished_; }

 private:
  Status start_;
  bool finished_ = false;
};

}  // namespace emissions::http
