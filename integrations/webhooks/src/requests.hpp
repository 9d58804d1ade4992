// Internal: a delivery's events turned into HTTP requests (one per event, or batches cut to
// max_body_bytes), and how a request's events are settled. Events that cannot be sent (too
// large, not serializable) are failed for good while planning, before any request.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "emissions/delivery.hpp"
#include "emissions/event.hpp"
#include "emissions/event_id.hpp"
#include "signature.hpp"

namespace emissions::detail::webhooks {

// One HTTP request: events()[first, first + count) of a delivery. A delivery cut into several
// requests is shared by them (`shared`); one that makes this request alone is held in it
// (`own`): no block per event allocated on the consumer's thread and freed on the I/O thread,
// and the request, kept as a spare, carries the handle's storage back to the consumer.
struct Request {
  std::shared_ptr<Delivery> shared = {};
  Delivery own = {};
  std::size_t first = 0;
  std::size_t count = 0;
  std::string id = {};    // webhook-id
  std::string body = {};  // what is POSTed
  // The attempt's webhook-timestamp (Unix seconds) and webhook-signature (sign()).
  std::int64_t signed_at = 0;
  std::string signature = {};

  // Whether the request holds its delivery (not moved from, not released).
  [[nodiscard]] bool has_delivery() const noexcept {
    return shared != nullptr || !own.events().empty();
  }
  // The delivery the request's events belong to (has_delivery()).
  [[nodiscard]] Delivery& delivery() noexcept { return shared ? *shared : own; }
  [[nodiscard]] const Delivery& delivery() const noexcept { return shared ? *shared : own; }
  // Lets go of the delivery (the last handle of a settled one frees its batch, here).
  void release_delivery() noexcept {
    shared.reset();
    own = Delivery();
  }

  // Acknowledges the request's events.
  void ack() noexcept;
  // Fails the request's events with `error`; `retry_after` (given to the delivery first) is
  // the server's Retry-After.
  void fail(const Status& error,
            std::optional<std::chrono::milliseconds> retry_after = std::nullopt) noexcept;
  // The ids of the request's events, in order.
  [[nodiscard]] std::vector<EventId> event_ids() const;
};

// How failed batches were cut, so that their retries are cut the same way (and keep their
// webhook-id): the pipeline hands back only the events that failed, so a retry may hold
// several failed batches side by side, which a fresh cut would merge. Bounded: beyond
// `capacity` batches the oldest are forgotten (their retries are cut afresh).
// Thread-safe (one mutex; used only on failures and retries).
class BatchMemory {
 public:
  explicit BatchMemory(std::size_t capacity = 65'536) : capacity_(capacity) {}
  // A batch of the events `ids` (in order) failed and will be tried again.
  void remember(std::vector<EventId> ids);
  // The size of the remembered batch that `events` starts with (its events, in order), and
  // forgets it; 0 when none does.
  [[nodiscard]] std::size_t recall(std::span<const Event> events);

 private:
  struct Entry {
    std::vector<EventId> ids;
    std::uint64_t serial = 0;  // which remember() made it
  };
  const std::size_t capacity_;
  std::mutex mutex_;
  std::unordered_map<EventId, Entry> by_first_;  // guarded by mutex_
  // Every remember() of the last `capacity_`, oldest first (some recalled since); an entry
  // is forgotten when its own remember() leaves this window. Guarded by mutex_.
  std::deque<std::pair<EventId, std::uint64_t>> order_;
  std::uint64_t serial_ = 0;  // guarded by mutex_
};

// Signs `request` for the attempt made at `now` (Unix seconds): signed_at and signature.
// Throws std::runtime_error when OpenSSL fails.
void sign(Request& request, const Signer& signer, std::int64_t now);

// The current time in Unix seconds, as webhook-timestamp carries it.
[[nodiscard]] std::int64_t unix_seconds() noexcept;

struct PlanLimits {
  std::size_t max_body_bytes = 0;
  bool batch = false;
};

// The requests for `delivery`'s events, appended to `out`. Fails (for good,
// `invalid_argument`) each event that cannot be serialized, or whose body alone exceeds the
// limit; `what` starts those reasons. With `limits.batch`, consecutive events are grouped
// into JSON arrays of at most max_body_bytes; a retry (attempt() > 1) first takes the
// batches `memory` recalls. One request per event is made from a spare (taken off the back
// of `spares`) while there is one: its texts are overwritten in the capacity they have.
// Allocates; throws only std::bad_alloc.
void plan_requests(const std::shared_ptr<Delivery>& delivery, const PlanLimits& limits,
                   BatchMemory& memory, std::string_view what, std::vector<Request>& spares,
                   std::vector<Request>& out);

// The one request for a delivery of a single event, not batched: like plan_requests(), but
// the request takes `delivery` itself (moved into Request::own) instead of a shared handle.
// When the event cannot be sent it is failed and `delivery` is left as it was.
void plan_alone(Delivery& delivery, std::size_t max_body_bytes, std::string_view what,
                std::vector<Request>& spares, std::vector<Request>& out);

}  // namespace emissions::detail::webhooks
