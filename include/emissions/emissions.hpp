// emissions/emissions.hpp: the umbrella header. Everything a service needs to emit events
// and deliver them. Included on their own: adapters (emissions/adapters/), and the
// standalone BatchBuffer<T> (emissions/batch_buffer.hpp) with its Clock
// (emissions/clock.hpp).
//
//   #include <emissions/emissions.hpp>
//
//   emissions::Config config;
//   config.add_adapter(my_adapter);
//   emissions::Emitter emitter(std::move(config));
//   emissions::start();
//   emissions::emit("order_created", {{"id", 1}});
//   emissions::commit();
#pragma once

#include "emissions/adapter.hpp"
#include "emissions/ambient.hpp"
#include "emissions/config.hpp"
#include "emissions/emitter.hpp"
#include "emissions/event.hpp"
#include "emissions/event_id.hpp"
#include "emissions/event_name.hpp"
#include "emissions/handler.hpp"
#include "emissions/status.hpp"
#include "emissions/telemetry.hpp"
#include "emissions/topic_router.hpp"
#include "emissions/transaction.hpp"
