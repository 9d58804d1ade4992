#include "pipeline/thread_role.hpp"

namespace emissions::detail {
namespace {

thread_local const Core* t_owner = nullptr;
thread_local unsigned t_settlement_callbacks = 0;

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

bool in_settlement_callback() noexcept {
  return t_settlement_callbacks != 0;
}

SettlementCallbackScope::SettlementCallbackScope() noexcept {
  ++t_settlement_callbacks;
}

SettlementCallbackScope::~SettlementCallbackScope() {
  --t_settlement_callbacks;
}

}  // namespace emissions::detail
