// The live viewer: serves the page, /metrics and health checks while a few events flow.
//
//   example_http_viewer            serves for 2 seconds, checks /healthz itself, exits
//   example_http_viewer 8080 600   serves on port 8080 for 10 minutes: open the URL printed
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "emissions/adapters/json_lines.hpp"
#include "emissions/emissions.hpp"
#include "emissions/http/server.hpp"

int main(int argc, char** argv) {
  const auto port = static_cast<std::uint16_t>(argc > 1 ? std::atoi(argv[1]) : 0);
  const int seconds = argc > 2 ? std::atoi(argv[2]) : 2;

  emissions::Config config;
  config.add_adapter(std::make_shared<emissions::adapters::JsonLines>("/dev/null"));
  // The server's own adapter must be in the Config before the Emitter is built.
  std::shared_ptr<emissions::http::Server> server = emissions::http::watch(config, {.port = port});
  emissions::Emitter emitter(std::move(config));
  if (auto s = server->start(emitter); !s.ok()) {
    std::cerr << "cannot serve: " << s.to_string() << '\n';
    return 1;
  }
  std::cout << "viewer: http://127.0.0.1:" << server->port() << "/\n"
            << "metrics: http://127.0.0.1:" << server->port() << "/metrics\n";

  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  for (int i = 0; std::chrono::steady_clock::now() < until; ++i) {
    emissions::Transaction tx = emitter.start();
    (void)tx.emit(i % 4 == 0 ? "payment_captured" : "order_created", {{"order", i}});
    if (auto s = tx.commit(); !s.ok()) std::cerr << s.to_string() << '\n';
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Stop the server before the emitter goes away (it reads the emitter's stats).
  if (auto s = server->stop(); !s.ok()) std::cerr << s.to_string() << '\n';
  return 0;
}
