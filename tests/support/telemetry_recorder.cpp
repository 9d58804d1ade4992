#include "emissions/telemetry.hpp"
#include "recording_adapter.hpp"

namespace emissions::test_support {

TelemetryRecorder::TelemetryRecorder(std::string id, std::vector<std::vector<std::string>> events)
    : id_(std::move(id)) {
  Status s = telemetry::attach_many(
      id_, std::move(events),
      [this](const telemetry::EventName& e, const nlohmann::json& m, const nlohmann::json& md) {
        {
          std::lock_guard lock(mutex_);
          records_.push_back({e, m, md});
        }
        arrived_.notify_all();
      });
  if (!s.ok()) throw std::runtime_error("TelemetryRecorder: " + s.to_string());
}

TelemetryRecorder::~TelemetryRecorder() {
  (void)telemetry::detach(id_);
}

bool TelemetryRecorder::wait_for(const std::vector<std::string>& event, std::size_t n,
                                 std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return arrived_.wait_for(lock, timeout, [&] {
    std::size_t count = 0;
    for (const Record& r : records_)
      count += r.event == event ? 1U : 0U;
    return count >= n;
  });
}

std::vector<TelemetryRecorder::Record> TelemetryRecorder::records() const {
  std::lock_guard lock(mutex_);
  return records_;
}

std::vector<TelemetryRecorder::Record> TelemetryRecorder::records(
    const std::vector<std::string>& event) const {
  std::lock_guard lock(mutex_);
  std::vector<Record> out;
  for (const auto& r : records_) {
    if (r.event == event) out.push_back(r);
  }
  return out;
}

}  // namespace emissions::test_support
