// A consumer that builds emissions from source with add_subdirectory().
#include <emissions/emissions.hpp>

#include <cstdio>

namespace {
class Counter final : public emissions::Adapter {
 public:
  std::string_view name() const override { return "counter"; }
  emissions::Status handle_events(std::span<const emissions::Event> batch) override {
    count += batch.size();
    return {};
  }
  std::size_t count = 0;
};
}  // namespace

int main() {
  auto counter = std::make_shared<Counter>();
  {
    emissions::Config config;
    config.add_adapter(counter);
    emissions::Emitter emitter(std::move(config));
    if (!emissions::start().ok()) return 1;
    if (!emissions::emit("order_created", {{"id", 1}}).ok()) return 1;
    if (!emissions::commit().ok()) return 1;
  }  // the destructor drains
  std::printf("delivered %zu event(s)\n", counter->count);
  return counter->count == 1 ? 0 : 1;
}
