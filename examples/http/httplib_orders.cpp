// Commit on 2xx with cpp-httplib: an order endpoint whose events are delivered only when
// it answers 201. The example calls itself twice (one order accepted, one refused) and
// prints what the adapter received.
#include <iostream>
#include <memory>
#include <thread>

#include "emissions/adapters/json_lines.hpp"
#include "emissions/emissions.hpp"
#include "emissions/http/httplib.hpp"

int main() {
  emissions::Config config;  // make_default: handlers emit with emissions::emit()
  config.add_adapter(std::make_shared<emissions::adapters::JsonLines>("/dev/stdout"));
  emissions::Emitter emitter(std::move(config));

  httplib::Server app;
  app.Post("/orders",
           emissions::http::commit_on_2xx([](const httplib::Request& req, httplib::Response& res) {
             (void)emissions::emit("order_received", {{"body", req.body}});
             if (req.body.empty()) {
               res.status = 422;  // refused: order_received is discarded
               return;
             }
             (void)emissions::emit("order_created", {{"body", req.body}});
             res.status = 201;  // both events are committed
           }));
  const int port = app.bind_to_any_port("127.0.0.1");
  std::thread server([&] { app.listen_after_bind(); });

  httplib::Client client("127.0.0.1", port);
  const auto created = client.Post("/orders", "{\"sku\":42}", "application/json");
  const auto refused = client.Post("/orders", "", "application/json");
  std::cerr << "POST with a body: " << (created ? created->status : -1)
            << ", POST without: " << (refused ? refused->status : -1) << '\n';
  app.stop();
  server.join();
  (void)emitter.drain();
  return created && created->status == 201 && refused && refused->status == 422 ? 0 : 1;
}
