#include "requests.hpp"

#include <utility>

#include "common/status_copy.hpp"

namespace emissions::detail::webhooks {
namespace {

// "event <id> (<name>)": how a reason names an event (never its payload).
std::string describe(const Event& event) {
  return "event " + event.id.str() + " (" + event.name.str() + ")";
}

// The event's envelope in `out`; false (after failing the event) when it cannot be
// serialized (e.g. a string that is not UTF-8).
bool serialize_or_fail(Delivery& delivery, std::size_t index, std::string_view what,
                       std::string& out) {
  const Event& event = delivery.events()[index];
  out.clear();
  try {
    serialize_to(event, out);
    return true;
  } catch (const nlohmann::json::exception& e) {
    delivery.fail(index, Status(Errc::invalid_argument, std::string(what) + ": " + describe(event) +
                                                            " cannot be serialized: " + e.what()));
    return false;
  }
}

void fail_too_large(Delivery& delivery, std::size_t index, std::size_t bytes, std::size_t limit,
                    std::string_view what) {
  delivery.fail(
      index, Status(Errc::invalid_argument,
                    std::string(what) + ": " + describe(delivery.events()[index]) +
                        " makes a body of " + std::to_string(bytes) +
                        " bytes, over max_body_bytes (" + std::to_string(limit) + "); not sent"));
}

// The bytes of a JSON array holding the envelopes [first, first + count) of `bodies`.
std::size_t array_bytes(std::size_t payload_bytes, std::size_t count) {
  return payload_bytes + count + 1;  // "[" + "]" + (count - 1) commas
}

Request make_batch(const std::shared_ptr<Delivery>& delivery, std::vector<std::string>& bodies,
                   std::size_t first, std::size_t count, std::size_t payload_bytes) {
  Request request;
  request.shared = delivery;
  request.first = first;
  request.count = count;
  request.id = delivery->events()[first].id.str() + "-" + std::to_string(count);
  request.body.reserve(array_bytes(payload_bytes, count));
  request.body += '[';
  for (std::size_t i = first; i < first + count; ++i) {
    if (i != first) request.body += ',';
    request.body += bodies[i];
    std::string().swap(bodies[i]);  // no longer needed: keep one copy of each body
  }
  request.body += ']';
  return request;
}

// The request for events()[index] alone, made from a spare when there is one (its texts
// overwritten in their capacity), without its delivery; false (the event failed) when the
// event cannot be sent.
bool make_one(Delivery& delivery, std::size_t index, std::size_t limit, std::string_view what,
              std::vector<Request>& spares, Request& request) {
  if (!spares.empty()) {
    request = std::move(spares.back());
    spares.pop_back();
  }
  if (!serialize_or_fail(delivery, index, what, request.body)) return false;
  if (request.body.size() > limit) {
    fail_too_large(delivery, index, request.body.size(), limit, what);
    return false;
  }
  request.first = index;
  request.count = 1;
  request.id.resize(EventId::kTextSize);  // the spare's capacity: no allocation
  (void)delivery.events()[index].id.write_to(request.id.data());
  request.signed_at = 0;
  request.signature.clear();
  return true;
}

void plan_each(const std::shared_ptr<Delivery>& delivery, std::size_t limit, std::string_view what,
               std::vector<Request>& spares, std::vector<Request>& out) {
  const std::size_t size = delivery->events().size();
  out.reserve(out.size() + size);
  for (std::size_t i = 0; i < size; ++i) {
    Request request;
    if (!make_one(*delivery, i, limit, what, spares, request)) continue;
    request.shared = delivery;
    out.push_back(std::move(request));
  }
}

void plan_batches(const std::shared_ptr<Delivery>& delivery, std::size_t limit, BatchMemory& memory,
                  std::string_view what, std::vector<Request>& requests) {
  const std::span<const Event> events = delivery->events();
  std::vector<std::string> bodies(events.size());
  std::vector<bool> sendable(events.size(), false);
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (!serialize_or_fail(*delivery, i, what, bodies[i])) continue;
    const std::size_t alone = array_bytes(bodies[i].size(), 1);
    if (alone > limit) {
      fail_too_large(*delivery, i, alone, limit, what);
      continue;
    }
    sendable[i] = true;
  }

  const bool retry = delivery->attempt() > 1;
  std::size_t i = 0;
  while (i < events.size()) {
    if (!sendable[i]) {
      ++i;
      continue;
    }
    // A retried batch: the same events as the first time, so the same webhook-id.
    if (retry) {
      const std::size_t n = memory.recall(events.subspan(i));
      bool all_sendable = n != 0;
      for (std::size_t k = i; k < i + n; ++k)
        all_sendable = all_sendable && sendable[k];
      if (all_sendable) {
        std::size_t bytes = 0;
        for (std::size_t k = i; k < i + n; ++k)
          bytes += bodies[k].size();
        requests.push_back(make_batch(delivery, bodies, i, n, bytes));
        i += n;
        continue;
      }
    }
    // A fresh cut: as many consecutive sendable events as fit.
    std::size_t bytes = bodies[i].size();
    std::size_t n = 1;
    while (i + n < events.size() && sendable[i + n] &&
           array_bytes(bytes + bodies[i + n].size(), n + 1) <= limit) {
      bytes += bodies[i + n].size();
      ++n;
    }
    requests.push_back(make_batch(delivery, bodies, i, n, bytes));
    i += n;
  }
}

}  // namespace

void Request::ack() noexcept {
  Delivery& target = delivery();
  for (std::size_t i = first; i < first + count; ++i)
    target.ack(i);
}

void Request::fail(const Status& error,
                   std::optional<std::chrono::milliseconds> retry_after) noexcept {
  Delivery& target = delivery();
  if (retry_after) target.retry_after(*retry_after);
  for (std::size_t i = first; i < first + count; ++i)
    target.fail(i, copy_or_bare(error));  // noexcept: never ends the I/O thread on OOM
}

std::vector<EventId> Request::event_ids() const {
  const std::span<const Event> events = delivery().events();
  std::vector<EventId> ids;
  ids.reserve(count);
  for (std::size_t i = first; i < first + count; ++i)
    ids.push_back(events[i].id);
  return ids;
}

void sign(Request& request, const Signer& signer, std::int64_t now) {
  request.signature.clear();
  signer.sign(request.id, std::to_string(now), request.body, request.signature);
  request.signed_at = now;
}

std::int64_t unix_seconds() noexcept {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void BatchMemory::remember(std::vector<EventId> ids) {
  // A batch of one too: beside another failed batch, a fresh cut could merge them.
  if (ids.empty()) return;
  std::lock_guard lock(mutex_);
  const EventId first = ids.front();
  const std::uint64_t serial = ++serial_;
  by_first_.insert_or_assign(first, Entry{std::move(ids), serial});
  order_.emplace_back(first, serial);
  while (order_.size() > capacity_) {
    const auto [id, made_by] = order_.front();
    order_.pop_front();
    const auto found = by_first_.find(id);
    if (found != by_first_.end() && found->second.serial == made_by) by_first_.erase(found);
  }
}

std::size_t BatchMemory::recall(std::span<const Event> events) {
  if (events.empty()) return 0;
  std::lock_guard lock(mutex_);
  const auto found = by_first_.find(events.front().id);
  if (found == by_first_.end()) return 0;
  const std::vector<EventId>& ids = found->second.ids;
  if (ids.size() > events.size()) return 0;
  for (std::size_t k = 0; k < ids.size(); ++k) {
    if (events[k].id != ids[k]) return 0;
  }
  const std::size_t n = ids.size();
  by_first_.erase(found);
  return n;
}

void plan_requests(const std::shared_ptr<Delivery>& delivery, const PlanLimits& limits,
                   BatchMemory& memory, std::string_view what, std::vector<Request>& spares,
                   std::vector<Request>& out) {
  if (limits.batch) {
    plan_batches(delivery, limits.max_body_bytes, memory, what, out);
  } else {
    plan_each(delivery, limits.max_body_bytes, what, spares, out);
  }
}

void plan_alone(Delivery& delivery, std::size_t max_body_bytes, std::string_view what,
                std::vector<Request>& spares, std::vector<Request>& out) {
  out.reserve(out.size() + 1);
  Request request;
  if (!make_one(delivery, 0, max_body_bytes, what, spares, request)) return;
  request.own = std::move(delivery);  // last: nothing below throws
  out.push_back(std::move(request));
}

}  // namespace emissions::detail::webhooks
