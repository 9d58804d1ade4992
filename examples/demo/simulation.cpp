#include "simulation.hpp"

#include <algorithm>
#include <array>
#include <random>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

#include "emissions/ambient.hpp"
#include "emissions/status.hpp"

namespace demo {

OrderTotals& OrderTotals::operator+=(const OrderTotals& other) {
  orders += other.orders;
  confirmed += other.confirmed;
  payment_declined += other.payment_declined;
  out_of_stock += other.out_of_stock;
  rejected += other.rejected;
  emitted += other.emitted;
  committed += other.committed;
  discarded += other.discarded;
  revenue_cents += other.revenue_cents;
  if (first_error.empty()) first_error = other.first_error;
  return *this;
}

namespace {

struct Product {
  const char* sku;
  std::int64_t price_cents;
};

// What the shop sells; orders pick from it.
constexpr std::array<Product, 8> kCatalog{{{"KB-101", 4'999},
                                           {"MS-220", 2'499},
                                           {"MN-270", 18'900},
                                           {"HS-330", 7'950},
                                           {"CB-USB", 1'299},
                                           {"DK-600", 12'900},
                                           {"LP-STD", 3'450},
                                           {"CM-HD1", 5'990}}};
constexpr std::array<const char*, 3> kPaymentMethods{"card", "paypal", "bank_transfer"};
constexpr std::array<const char*, 3> kWarehouses{"ams-1", "fra-2", "lis-1"};

// The std distributions may differ between standard libraries; mt19937_64 may not. Drawing
// through these helpers keeps a seed's orders the same everywhere.
class Rng {
 public:
  Rng(std::uint64_t seed, std::uint64_t stream) : engine_(mix(seed ^ mix(stream + 1))) {}

  // A number in [0, n).
  std::uint64_t below(std::uint64_t n) { return engine_() % n; }
  // A number in [lo, hi].
  std::uint64_t between(std::uint64_t lo, std::uint64_t hi) { return lo + below(hi - lo + 1); }
  // True with probability p.
  bool chance(double p) { return static_cast<double>(engine_() >> 11) * 0x1.0p-53 < p; }

 private:
  // splitmix64's finaliser: nearby seeds (thread 0, 1, 2...) give unrelated streams.
  static std::uint64_t mix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
    x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
    return x ^ (x >> 31);
  }

  std::mt19937_64 engine_;
};

enum class Outcome { confirmed, payment_declined, out_of_stock, rejected, unavailable };

// One request thread of the order service: runs orders one after another on this thread's
// ambient transaction.
class OrderDesk {
 public:
  OrderDesk(Rng rng, double fail_rate, CommitLog& commits, OrderTotals& totals,
            std::atomic<std::uint64_t>& emitted)
      : rng_(std::move(rng)),
        fail_rate_(fail_rate),
        commits_(commits),
        totals_(totals),
        emitted_(emitted) {}

  // One order, written the way a request handler would use the ambient API. `slot` is the
  // order's CommitLog entry; adapters find it in each event's metadata.
  Outcome place_order(std::uint64_t order_id, std::size_t slot) {
    // Decide up front what will go wrong, so a seed fixes every order's fate.
    const bool fails = rng_.chance(fail_rate_);
    const bool declined = fails && rng_.below(3) != 0;  // 2 failures in 3: payment declined
    const bool out_of_stock = fails && !declined;

    if (emissions::Status s = emissions::start(); !s.ok()) {
      note_error(s);
      return Outcome::unavailable;
    }
    ++totals_.orders;
    in_buffer_ = 0;
    metadata_ = {{"source", "order-service"}, {"request", slot}};

    nlohmann::json items = nlohmann::json::array();
    std::int64_t total_cents = 0;
    const std::uint64_t lines = rng_.between(1, 4);
    for (std::uint64_t i = 0; i < lines; ++i) {
      const Product& product = kCatalog[rng_.below(kCatalog.size())];
      const auto qty = static_cast<std::int64_t>(rng_.between(1, 3));
      total_cents += qty * product.price_cents;
      items.push_back(
          {{"sku", product.sku}, {"qty", qty}, {"unit_price_cents", product.price_cents}});
    }
    const std::uint64_t customer_id = rng_.between(1, 50'000);

    if (!emit("order_created", {{"order_id", order_id},
                                {"customer_id", customer_id},
                                {"items", items},
                                {"total_cents", total_cents},
                                {"currency", "EUR"}})) {
      return abandon(Outcome::rejected);
    }
    // The payment provider says no: nothing of this order may reach the adapters.
    if (declined) return abandon(Outcome::payment_declined);

    const char* method = kPaymentMethods[rng_.below(kPaymentMethods.size())];
    if (!emit("payment_authorized",
              {{"order_id", order_id}, {"amount_cents", total_cents}, {"method", method}})) {
      return abandon(Outcome::rejected);
    }
    // Stock ran out after the payment was authorized: the whole transaction goes.
    if (out_of_stock) return abandon(Outcome::out_of_stock);

    const char* warehouse = kWarehouses[rng_.below(kWarehouses.size())];
    if (!emit("inventory_reserved",
              {{"order_id", order_id}, {"warehouse", warehouse}, {"items", std::move(items)}}) ||
        !emit("order_confirmed", {{"order_id", order_id}, {"total_cents", total_cents}})) {
      return abandon(Outcome::rejected);
    }

    commits_.record(slot, steady_now_ns());
    if (emissions::Status s = emissions::commit(); !s.ok()) {
      // On error the buffer stays open with its events; give them up.
      note_error(s);
      return abandon(Outcome::rejected);
    }
    totals_.committed += in_buffer_;
    totals_.revenue_cents += total_cents;
    return Outcome::confirmed;
  }

 private:
  bool emit(emissions::EventName name, nlohmann::json payload) {
    if (emissions::Status s = emissions::emit(name, std::move(payload), metadata_); !s.ok()) {
      note_error(s);
      return false;
    }
    ++in_buffer_;
    ++totals_.emitted;
    emitted_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  Outcome abandon(Outcome why) {
    emissions::terminate();
    totals_.discarded += in_buffer_;
    return why;
  }

  void note_error(const emissions::Status& s) {
    if (totals_.first_error.empty()) totals_.first_error = s.to_string();
  }

  Rng rng_;
  double fail_rate_;
  CommitLog& commits_;
  OrderTotals& totals_;
  std::atomic<std::uint64_t>& emitted_;
  nlohmann::json metadata_;
  std::uint64_t in_buffer_ = 0;  // events emitted into the open transaction
};

}  // namespace

Simulation::Simulation(SimulationOptions options, std::shared_ptr<CommitLog> commits)
    : options_(options),
      commits_(std::move(commits)),
      progress_(options.threads),
      totals_(options.threads) {}

void Simulation::run(std::stop_token stop) {
  {
    std::vector<std::jthread> threads;  // joined when the block ends, even on an exception
    threads.reserve(options_.threads);
    for (std::size_t t = 0; t < options_.threads; ++t)
      threads.emplace_back([this, t, stop] { run_thread(t, stop); });
  }
}

void Simulation::run_thread(std::size_t thread, const std::stop_token& stop) {
  // This thread's share of the target, and of the commit log's slots (one per event).
  const std::uint64_t threads = options_.threads;
  const std::uint64_t base = options_.events / threads;
  const std::uint64_t extra = options_.events % threads;
  const std::uint64_t quota = base + (thread < extra ? 1 : 0);
  const std::uint64_t first_slot = thread * base + std::min<std::uint64_t>(thread, extra);

  OrderTotals& totals = totals_[thread];
  OrderDesk desk(Rng(options_.seed, thread), options_.fail_rate, *commits_, totals,
                 progress_[thread].emitted);
  for (std::uint64_t n = 0; n < quota && totals.emitted < quota && !stop.stop_requested(); ++n) {
    const std::uint64_t slot = first_slot + n;
    switch (desk.place_order(slot + 1, static_cast<std::size_t>(slot))) {
      case Outcome::confirmed:
        ++totals.confirmed;
        break;
      case Outcome::payment_declined:
        ++totals.payment_declined;
        break;
      case Outcome::out_of_stock:
        ++totals.out_of_stock;
        break;
      case Outcome::rejected:
        ++totals.rejected;
        break;
      case Outcome::unavailable:
        return;  // no emitter to talk to: stop this thread
    }
  }
}

std::uint64_t Simulation::emitted() const noexcept {
  std::uint64_t sum = 0;
  for (const Progress& p : progress_)
    sum += p.emitted.load(std::memory_order_relaxed);
  return sum;
}

OrderTotals Simulation::totals() const {
  OrderTotals sum;
  for (const OrderTotals& t : totals_)
    sum += t;
  return sum;
}

}  // namespace demo
