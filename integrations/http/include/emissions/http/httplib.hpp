/// @file
/// emissions/http/httplib.hpp: commit a cpp-httplib handler's events on a 2xx response.
///
/// Header-only; includes <httplib.h> (Debian: libcpp-httplib-dev), which the application
/// links itself. commit_on_2xx() wraps a handler in a RequestScope (emissions/http/scope.hpp):
/// the events the handler emits with emissions::emit() are committed when the status it set
/// is 2xx (a status left unset counts as the 200 cpp-httplib sends then), discarded for any
/// other status and when it throws (the exception goes on to cpp-httplib, which answers 500).
///
/// @code
///   httplib::Server app;
///   app.Post("/orders", emissions::http::commit_on_2xx([](const httplib::Request& req,
///                                                         httplib::Response& res) {
///     (void)emissions::emit("order_created", {{"body", req.body}});
///     res.status = 201;
///   }));
/// @endcode
///
/// Thread-safety: the wrapped handler runs on cpp-httplib's worker thread, which is where
/// the scope lives (the ambient buffer is per thread); the emitter must be the default one
/// (Config::make_default).
#pragma once

#include <functional>
#include <string>
#include <utility>

#include <httplib.h>

#include "emissions/http/scope.hpp"
#include "emissions/status.hpp"

namespace emissions::http {

/// What commit_on_2xx does when a 2xx response's events could not be committed (the
/// pipeline was overloaded or shut down, or the scope could not start): by default the
/// response becomes a 503 naming the reason, so the client does not take it for a success.
using HttplibCommitError = std::function<void(const Status& error, httplib::Response& res)>;

/// The default HttplibCommitError: 503 with the error as a plain-text body.
inline void answer_503(const Status& error, httplib::Response& res) {
  res.status = 503;
  res.set_content("events could not be committed: " + error.to_string() + "\n",
                  "text/plain; charset=utf-8");
}

/// Wraps `handler` so that its events are committed on a 2xx response; see the file
/// comment. `on_commit_error` is called, on the same thread, when the commit of a 2xx
/// response fails (the events are discarded then).
///
/// @code
///   server.Get("/ping", emissions::http::commit_on_2xx(ping_handler));
/// @endcode
inline httplib::Server::Handler commit_on_2xx(httplib::Server::Handler handler,
                                              HttplibCommitError on_commit_error = answer_503) {
  return [handler = std::move(handler), on_commit_error = std::move(on_commit_error)](
             const httplib::Request& req, httplib::Response& res) {
    RequestScope scope;
    handler(req, res);  // throws: the scope's destructor discards the events
    const int status = res.status == -1 ? 200 : res.status;  // -1: unset, sent as 200
    const bool success = status >= 200 && status < 300;
    const Status s = scope.finish(status);
    if (success && !s.ok() && on_commit_error) on_commit_error(s, res);
  };
}

}  // namespace emissions::http
