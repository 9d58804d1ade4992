// Adversary: an Emitter with a Webhook at namespace scope, destroyed during static
// destruction while every request hangs on an endpoint that never answers (a listening
// socket that never accepts: the kernel completes the handshakes and buffers the requests).
// The promise under test (emissions/adapters/webhook.hpp, emissions/emitter.hpp): the
// destructor returns by the shutdown deadline, terminate() gives up on what is in flight,
// and nothing is left outstanding; OpenSSL and libcurl are still usable then.
// Exit status: 0 ok; 3 too slow; 4 requests left outstanding; 5 no request ever reached the
// endpoint (the test proved nothing).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <emissions/adapters/webhook.hpp>
#include <emissions/emissions.hpp>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "exit_watch.hpp"

namespace {

using namespace std::chrono_literals;

// Listens on 127.0.0.1 with a large backlog and never accepts.
class SilentEndpoint {
 public:
  SilentEndpoint() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&address), length) != 0 ||
        listen(fd_, 128) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      adversarial::fail("webhook_static_exit: cannot listen on 127.0.0.1\n", 2);
    }
    port_ = ntohs(address.sin_port);
  }
  ~SilentEndpoint() { close(fd_); }
  SilentEndpoint(const SilentEndpoint&) = delete;
  SilentEndpoint& operator=(const SilentEndpoint&) = delete;
  [[nodiscard]] std::string url() const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/hooks";
  }

 private:
  int fd_ = -1;
  unsigned short port_ = 0;
};

// Declaration order is destruction order reversed: the emitter goes first, then the checker
// (the hook is still alive to be asked), then the hook, then the endpoint.
SilentEndpoint g_endpoint;
std::shared_ptr<emissions::adapters::Webhook> g_hook =
    std::make_shared<emissions::adapters::Webhook>(emissions::adapters::WebhookOptions{
        .url = g_endpoint.url(),
        .secrets = {"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
        .timeout = std::chrono::minutes(1),  // only terminate() can end the requests
        .max_connections = 4,
        .allow_private_networks = true});

struct Checker {
  ~Checker() {
    if (g_hook->outstanding() != 0) {
      adversarial::fail("webhook_static_exit: requests outstanding after ~Emitter\n", 4);
    }
    if (adversarial::seconds_since_main_returned() > 5.0) {
      adversarial::fail("webhook_static_exit: ~Emitter took more than 5 s (deadline 500 ms)\n", 3);
    }
  }
} g_checker;

emissions::Config make_config() {
  emissions::Config config;
  config.make_default = false;
  config.shutdown_timeout = 500ms;
  config.add_adapter(g_hook);
  return config;
}
emissions::Emitter g_emitter(make_config());

}  // namespace

int main() {
  for (int i = 0; i < 50; ++i) {
    emissions::Transaction tx = g_emitter.start();
    if (!tx.emit("order_created", {{"n", i}}).ok()) return 1;
    if (!tx.commit().ok()) return 1;
  }
  // Wait until the requests are on the wire (up to 4 connections' worth outstanding).
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (g_hook->outstanding() == 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(5ms);
  if (g_hook->outstanding() == 0) return 5;
  std::printf("webhook_static_exit: %zu requests hanging; returning from main\n",
              g_hook->outstanding());
  std::fflush(stdout);
  adversarial::main_returns();
  return 0;
}
