/// @file
/// emissions/handler.hpp: in-process subscribers to committed events.
///
/// A Handler names the events it wants; each (handler, event) invocation runs on the
/// Emitter's handler thread pool with its own ambient buffer, so `emissions::emit` inside a
/// handler cascades: those events are committed when the handler returns ok, and discarded
/// when it returns an error, is ignored, or throws. A handler that returns
/// HandlerResult::retry() is run again later (per Config::handler_retry), each attempt with a
/// fresh buffer.
///
/// @code
///   class SearchIndexer final : public emissions::Handler {
///    public:
///     std::string_view name() const override { return "search_indexer"; }
///     std::vector<emissions::EventName> events() const override {
///       return {"order_created", "order_updated"};
///     }
///     emissions::HandlerResult handle_event(const emissions::Event& e) override {
///       if (!index(e.payload)) return emissions::HandlerResult::error("index unavailable");
///       // .at(): the payload is const (a missing key throws, which is reported as an error)
///       emissions::Status s = emissions::emit("order_indexed", {{"id", e.payload.at("id")}});
///       if (!s.ok()) return emissions::HandlerResult::error(s.to_string());
///       return emissions::HandlerResult::ok();  // order_indexed cascades
///     }
///   };
///   config.add_handler(std::make_shared<SearchIndexer>());
/// @endcode
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "emissions/event.hpp"

namespace emissions {

/// What a handler invocation came to.
class HandlerResult {
 public:
  /// The four outcomes.
  enum class Kind {
    ok,       ///< handled: the invocation's buffer is committed
    error,    ///< failed for good, with a reason: the buffer is discarded
    ignored,  ///< not acted on: the buffer is discarded
    retry,    ///< failed for now, with a reason: the buffer is discarded, the invocation runs
              ///< again (Config::handler_retry)
  };

  /// Handled: reported as [emissions, handler, success]; the invocation's events cascade.
  static HandlerResult ok() { return HandlerResult(Kind::ok, {}); }
  /// Failed for good (never run again): reported as [emissions, handler, error] with
  /// `reason`.
  static HandlerResult error(std::string reason) {
    return HandlerResult(Kind::error, std::move(reason));
  }
  /// Failed for now (a dependency is down): what this attempt emitted is discarded and the
  /// invocation runs again after a delay, on a pool thread, with a fresh buffer, per
  /// Config::handler_retry (whose default, max_attempts = 1, never retries). Each such
  /// attempt is reported as [emissions, handler, error] with `reason`, `attempt` and
  /// `retrying` (true while another attempt is scheduled); the last one counts as an error.
  /// An ordered() handler's later invocations wait for the retried one. drain() waits for
  /// scheduled retries; shutdown() drops those not run by its deadline.
  static HandlerResult retry(std::string reason) {
    return HandlerResult(Kind::retry, std::move(reason));
  }
  /// The handler chose not to act on this event (reported as [emissions, handler, ignored]).
  static HandlerResult ignored() { return HandlerResult(Kind::ignored, {}); }

  /// Which of the four outcomes this is.
  [[nodiscard]] Kind kind() const noexcept { return kind_; }
  /// `kind() == Kind::ok`.
  [[nodiscard]] bool is_ok() const noexcept { return kind_ == Kind::ok; }
  /// Why an error or a retry happened; empty for ok and ignored.
  [[nodiscard]] const std::string& reason() const noexcept { return reason_; }

 private:
  HandlerResult(Kind kind, std::string reason) : kind_(kind), reason_(std::move(reason)) {}
  Kind kind_;
  std::string reason_;
};

/// An in-process subscriber: implement events(), handle_event() and name(), and add it
/// with `Config::add_handler`.
class Handler {
 public:
  virtual ~Handler() = default;

  /// The event names this handler subscribes to; read once, when the Emitter is built.
  [[nodiscard]] virtual std::vector<EventName> events() const = 0;

  /// Called on a handler pool thread, once per subscribed event. May run concurrently with
  /// other invocations of the same handler unless ordered() is true. Exceptions are caught
  /// and reported as errors (reason = the exception's message).
  virtual HandlerResult handle_event(const Event& event) = 0;

  /// True: this handler's invocations run one at a time, in delivery order.
  [[nodiscard]] virtual bool ordered() const { return false; }

  /// A short stable name for telemetry (`handler`).
  [[nodiscard]] virtual std::string_view name() const = 0;
};

}  // namespace emissions
