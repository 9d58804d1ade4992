/// @file
/// emissions/emissions.hpp: the umbrella header. Everything a service needs to emit events
/// and deliver them. Included on their own: adapters (emissions/adapters/), and the
/// standalone `BatchBuffer<T>` (emissions/batch_buffer.hpp) with its Clock
/// (emissions/clock.hpp).
///
/// @code
///   #include <emissions/emissions.hpp>
///
///   emissions::Config config;
///   config.add_adapter(my_adapter);
///   emissions::Emitter emitter(std::move(config));
///   emissions::Status s = emissions::start();
///   s.update(emissions::emit("order_created", {{"id", 1}}));
///   s.update(emissions::commit());  // check it: on error nothing was delivered
/// @endcode
#pragma once

#include "emissions/adapter.hpp"
#include "emissions/ambient.hpp"
#include "emissions/config.hpp"
#include "emissions/deadline.hpp"
#include "emissions/delivery.hpp"
#include "emissions/emitter.hpp"
#include "emissions/event.hpp"
#include "emissions/event_id.hpp"
#include "emissions/event_name.hpp"
#include "emissions/handler.hpp"
#include "emissions/status.hpp"
#include "emissions/telemetry.hpp"
#include "emissions/topic_router.hpp"
#include "emissions/transaction.hpp"

/// @namespace emissions
/// Domain events emitted inside transactions and delivered on commit: transactions and the
/// ambient API, the Emitter and its pipeline, adapters, handlers, topic routing, telemetry.

/// @namespace emissions::adapters
/// The adapters that ship with the library, one header each under emissions/adapters/.

/// @namespace emissions::telemetry
/// Erlang-style telemetry: attach handlers to named events; the library reports through it.
