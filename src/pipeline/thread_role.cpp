#include "pipeline/thread_role.hpp"

namespace emissions::detail {
namespace {

thread_local const Core* t_owner = nullptr;

}  // namespace

const Core* current_thread_owner() noexcept {
  return t_owner;
}

ThreadRole::ThreadRole(const Core* owner) noexcept : previous_(t_owner) {
  t_owner = owner;
}

ThreadRole::~ThreadRole() {
  t_owner = previous_;
}

}  // namespace emissions::detail
