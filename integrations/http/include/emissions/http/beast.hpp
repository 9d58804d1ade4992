/// @file
/// emissions/http/beast.hpp: commit a Boost.Beast handler's events on a 2xx response.
///
/// Header-only; includes Boost.Beast's HTTP message header (the only public header of
/// emissions::http that includes Boost). finish() ends a RequestScope
/// (emissions/http/scope.hpp) from a response before it is written; commit_on_2xx() wraps a
/// handler that turns a request into a response.
///
/// @code
///   namespace bhttp = boost::beast::http;
///   auto handler = emissions::http::commit_on_2xx(
///       [](const bhttp::request<bhttp::string_body>& req) {
///         (void)emissions::emit("order_created", {{"body", req.body()}});
///         bhttp::response<bhttp::string_body> res{bhttp::status::created, req.version()};
///         res.body() = "created\n";
///         res.prepare_payload();
///         return res;
///       });
///   bhttp::write(socket, handler(request));
/// @endcode
///
/// Thread-safety: the scope and the handler run on the calling thread (the ambient buffer
/// is per thread); the emitter must be the default one (Config::make_default).
#pragma once

#include <string>
#include <type_traits>
#include <utility>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>

#include "emissions/http/scope.hpp"
#include "emissions/status.hpp"

namespace emissions::http {

/// Finishes `scope` with `response`'s status: commits on 2xx, discards otherwise. Call it
/// when the response is complete and not yet written. Returns what RequestScope::finish
/// returns.
///
/// @code
///   emissions::http::RequestScope scope;
///   auto res = route(req);
///   if (!emissions::http::finish(scope, res).ok() && res.result_int() / 100 == 2)
///     res.result(boost::beast::http::status::service_unavailable);
/// @endcode
template <bool isRequest, class Body, class Fields>
Status finish(RequestScope& scope,
              const boost::beast::http::message<isRequest, Body, Fields>& response) {
  static_assert(!isRequest, "emissions::http::finish takes the response");
  return scope.finish(static_cast<int>(response.result_int()));
}

/// Wraps `handler` (request -> response) in a RequestScope: its events are committed when
/// the response is 2xx, discarded otherwise and when it throws (the exception propagates).
/// When the commit of a 2xx response fails, the response's status becomes 503 (its body
/// is left as the handler made it) so that the client does not take it for a success.
///
/// @code
///   auto wrapped = emissions::http::commit_on_2xx(my_handler);
///   auto res = wrapped(req);
/// @endcode
template <class Handler>
auto commit_on_2xx(Handler handler) {
  return [handler = std::move(handler)](auto&& request) {
    RequestScope scope;
    auto response = handler(std::forward<decltype(request)>(request));
    const bool success = response.result_int() / 100 == 2;
    if (!finish(scope, response).ok() && success)
      response.result(boost::beast::http::status::service_unavailable);
    return response;
  };
}

}  // namespace emissions::http
