// An adapter that routes each event to "<prefix>.<topic>", the way a Kafka adapter picks its
// Kafka topic, with the topics fixed at compile time. With no Kafka here it prints
// "<kafka topic> <serialized envelope>" per event instead of producing it.
//
//   $ example_topic_prefix_adapter
//   events.orders {"emitted_at":"...","id":"...","metadata":{},"name":"order_created",...}
//   events.users {"emitted_at":"...","id":"...","metadata":{},"name":"user_created",...}
//   (page_viewed has no topic: the adapter is not interested in it)
#include <iostream>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "emissions/adapter.hpp"
#include "emissions/config.hpp"
#include "emissions/emitter.hpp"
#include "emissions/event.hpp"
#include "emissions/topic_router.hpp"
#include "emissions/transaction.hpp"

namespace {

// A mistake here (an event under two topics, an empty name) stops the build.
constexpr auto kTopics = emissions::make_topic_router(
    emissions::topic("orders", "order_created", "order_updated", "order_shipped"),
    emissions::topic("inventory", "item_received", "item_adjusted", "item_moved"),
    emissions::topic("users", "user_created", "user_updated"));

static_assert(kTopics.topic_for_event("order_shipped") == "orders");

class TopicPrefixAdapter final : public emissions::Adapter {
 public:
  explicit TopicPrefixAdapter(std::string prefix) : prefix_(std::move(prefix)) {}

  [[nodiscard]] std::string_view name() const override { return "topic_prefix"; }

  // Events without a topic never reach handle_events (they are counted as filtered).
  [[nodiscard]] bool interested(const emissions::Event& event) const override {
    return kTopics.topic_for_event(event.name).has_value();
  }

  emissions::Status handle_events(std::span<const emissions::Event> batch) override {
    for (const emissions::Event& event : batch) {
      const std::optional<std::string_view> topic = kTopics.topic_for_event(event.name);
      if (!topic) continue;  // cannot happen: interested() filtered it out
      kafka_topic_.assign(prefix_).append(".").append(*topic);
      line_.clear();
      emissions::serialize_to(event, line_);
      // A real adapter would produce(kafka_topic_, line_) and check the result.
      std::cout << kafka_topic_ << ' ' << line_ << '\n';
    }
    std::cout.flush();
    if (!std::cout) return {emissions::Errc::unavailable, "stdout is not writable"};
    return {};
  }

 private:
  std::string prefix_;
  std::string kafka_topic_;  // reused across events: no allocation once they are big enough
  std::string line_;
};

// Prints the error and returns false when `status` is not ok.
bool ok(const emissions::Status& status, std::string_view what) {
  if (!status.ok()) std::cerr << what << " failed: " << status.to_string() << '\n';
  return status.ok();
}

}  // namespace

int main() {
  emissions::Config config;
  config.add_adapter(std::make_shared<TopicPrefixAdapter>("events"));
  emissions::Emitter emitter(std::move(config));

  auto tx = emitter.start();
  if (!ok(tx.emit("order_created", {{"id", 1}}), "emit")) return 1;
  if (!ok(tx.emit("user_created", {{"id", 7}}), "emit")) return 1;
  if (!ok(tx.emit("page_viewed", {{"path", "/"}}), "emit")) return 1;
  if (!ok(tx.commit(), "commit")) return 1;
  if (!ok(emitter.drain(), "drain")) return 1;
  std::cout << "(page_viewed has no topic: the adapter is not interested in it)\n";
  return 0;
}
