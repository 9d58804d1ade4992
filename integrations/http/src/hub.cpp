#include "hub.hpp"

#include <algorithm>
#include <utility>

#include <nlohmann/json.hpp>

namespace emissions::http::detail {

Hub::Hub(bool show_payloads, std::size_t history, std::size_t client_queue,
         std::size_t max_per_second)
    : show_payloads_(show_payloads),
      history_limit_(history),
      client_queue_(client_queue),
      max_per_second_(static_cast<double>(max_per_second)),
      budget_(static_cast<double>(max_per_second)) {}

std::string Hub::render(const Event& event) const {
  if (show_payloads_) {
    try {
      return serialize(event);
    } catch (const nlohmann::json::type_error&) {
      // A string that is not UTF-8 (JSON built from raw bytes): shown with U+FFFD in its
      // place rather than not at all (the events after it in the batch are shown too).
      return envelope(event).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
  }
  nlohmann::json j = {{"id", event.id.str()},
                      {"name", event.name.str()},
                      {"emitted_at", format_timestamp(event.emitted_at)}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void Hub::publish(std::span<const Event> batch) {
  // Sampling: serializing every event at 100k/s would cost the watcher (and a 2-core
  // machine's pipeline) more than a viewer can show. The newest events of the batch are
  // the ones kept when the budget does not cover it.
  const auto now = std::chrono::steady_clock::now();
  budget_ =
      std::min(max_per_second_,
               budget_ + std::chrono::duration<double>(now - refilled_).count() * max_per_second_);
  refilled_ = now;
  const std::size_t shown =
      std::min(batch.size(), static_cast<std::size_t>(std::max(0.0, budget_)));
  budget_ -= static_cast<double>(shown);
  std::size_t skipped = batch.size() - shown;  // plus those that could not be rendered

  // Serialize before locking: the I/O thread and new clients never wait for JSON.
  std::vector<std::string> texts;
  texts.reserve(shown);
  for (const Event& e : batch.last(shown)) {
    try {
      texts.push_back(render(e));
    } catch (...) {  // out of memory: this one is missed, the others are shown
      ++skipped;
    }
  }

  std::lock_guard lock(mu_);
  seen_ += batch.size();
  // Runs of one name (the usual batch) cost one lookup.
  for (std::size_t i = 0; i < batch.size();) {
    std::size_t j = i + 1;
    while (j < batch.size() && batch[j].name == batch[i].name)
      ++j;
    counts_[batch[i].name] += j - i;
    i = j;
  }
  bool queued = false;
  for (const auto& client : clients_) {
    if (skipped != 0) {
      client->missed += skipped;
      queued = true;
    }
    for (const std::string& text : texts) {
      if (client->events.size() < client_queue_) {
        client->events.push_back(text);
        queued = true;
      } else {
        ++client->missed;
        queued = true;
      }
    }
  }
  for (std::string& text : texts) {
    if (history_limit_ == 0) break;
    if (history_.size() == history_limit_) history_.pop_front();
    history_.push_back(std::move(text));
  }
  if (queued && wake_armed_ && wake_) {
    wake_armed_ = false;
    wake_();
  }
}

std::shared_ptr<ClientQueue> Hub::subscribe() {
  auto client = std::make_shared<ClientQueue>();
  std::lock_guard lock(mu_);
  const std::size_t n = std::min(history_.size(), client_queue_);
  client->events.assign(history_.end() - static_cast<std::ptrdiff_t>(n), history_.end());
  clients_.push_back(client);
  return client;
}

void Hub::unsubscribe(const std::shared_ptr<ClientQueue>& client) {
  std::lock_guard lock(mu_);
  std::erase(clients_, client);
}

Hub::Taken Hub::take(ClientQueue& client, std::size_t max) {
  Taken out;
  std::lock_guard lock(mu_);
  const std::size_t n = std::min(max, client.events.size());
  out.events.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    out.events.push_back(std::move(client.events.front()));
    client.events.pop_front();
  }
  out.missed = std::exchange(client.missed, 0);
  return out;
}

bool Hub::pending(const ClientQueue& client) {
  std::lock_guard lock(mu_);
  return !client.events.empty() || client.missed != 0;
}

void Hub::set_wake(std::function<void()> wake) {
  std::lock_guard lock(mu_);
  wake_ = std::move(wake);
  wake_armed_ = true;
}

void Hub::rearm() {
  std::lock_guard lock(mu_);
  wake_armed_ = true;
}

std::map<std::string, std::uint64_t> Hub::counts() {
  std::lock_guard lock(mu_);
  std::map<std::string, std::uint64_t> out;
  for (const auto& [name, n] : counts_)
    out.emplace(name.str(), n);
  return out;
}

std::uint64_t Hub::seen() {
  std::lock_guard lock(mu_);
  return seen_;
}

std::string ClientFeed::next(Hub& hub, ClientQueue& client, std::size_t max_events) {
  if (!held_.empty()) {
    std::string out = events_message(held_);
    held_.clear();
    return out;
  }
  Hub::Taken taken = hub.take(client, max_events);
  if (taken.missed != 0) {
    held_ = std::move(taken.events);  // after the missed count: the client learns of the gap first
    return nlohmann::json{{"type", "missed"}, {"count", taken.missed}}.dump();
  }
  if (taken.events.empty()) return {};
  return events_message(taken.events);
}

std::string events_message(const std::vector<std::string>& events) {
  std::string out = R"({"type":"events","events":[)";
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (i != 0) out += ',';
    out += events[i];
  }
  out += "]}";
  return out;
}

}  // namespace emissions::http::detail
