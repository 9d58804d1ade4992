#include "emissions/http/scope.hpp"

#include <string>

#include "emissions/ambient.hpp"

namespace emissions::http {

RequestScope::RequestScope() : start_(emissions::start()) {}

RequestScope::~RequestScope() {
  if (!finished_ && start_.ok()) emissions::terminate();
}

Status RequestScope::finish(int http_status) {
  if (finished_) return {Errc::invalid_argument, "RequestScope::finish: already finished"};
  finished_ = true;
  if (!start_.ok()) return start_;
  if (http_status < 200 || http_status >= 300) {
    emissions::terminate();
    return {};
  }
  Status s = emissions::commit();
  // A failed commit leaves the ambient buffer open; the response is decided, so the
  // events go (and the thread can serve its next request).
  if (!s.ok()) emissions::terminate();
  return s;
}

}  // namespace emissions::http
