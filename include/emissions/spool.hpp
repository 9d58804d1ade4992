/// @file
/// emissions/spool.hpp: a durable spool, so that a commit that returned ok survives a
/// crash and a slow adapter's backlog waits on disk instead of in memory or being dropped.
///
/// With `Config::spool` set, each commit's events are appended once to a log of segment
/// files in `dir` before commit() returns, whatever the number of adapters. Each adapter
/// reads the log in order through its own reader and keeps a persisted position: the first
/// commit it has not settled. An adapter that falls behind by more than its `buffer_size`
/// reads its backlog back from disk, so memory stays bounded. (Before a `block` adapter
/// whose queue is full falls behind, a commit waits for it briefly, up to 5 ms and never
/// longer than its `block_timeout`, with no lock held: a consumer that missed a core for a
/// moment stays live, which reading back would cost far more. After such a wait times out,
/// commits do not wait for that adapter for 100 ms. Other policies never wait; commits made
/// on the pipeline's own threads never wait.) A segment file is deleted
/// once every adapter settled every event in it. docs/SPOOL.md gives the guarantees, the
/// format and the recovery rules.
///
/// After a crash, an Emitter constructed on the same `dir` delivers to each adapter
/// (matched by `name()`) every event it had not settled, with the original id, name,
/// payload, metadata and emitted_at, in the original order, before anything newer. An
/// adapter may see an event again that it had received but not settled when the process
/// died (at least once): destinations deduplicate by `Event::id`.
///
/// Threads: a spool adds one reader thread per adapter (and one for the handler dispatcher
/// when there are handlers), owned by the Emitter and joined by shutdown.
///
/// @code
///   emissions::Config config;
///   config.spool = emissions::SpoolOptions{.dir = "/var/lib/myservice/spool"};
///   config.add_adapter(kafka);
///   emissions::Emitter emitter(std::move(config));  // delivers what a crash left behind
/// @endcode
#pragma once

#include <cstdint>
#include <filesystem>

namespace emissions {

/// What commit() returning ok promises about the commit's events.
enum class Durability {
  /// In the operating system's hands: a crash of the process loses nothing; a power loss
  /// or kernel crash may lose the last commits (what the kernel had not written back yet).
  /// Costs no system call per commit (the log is memory-mapped).
  process,
  /// On stable storage (fdatasync) before commit() returns. Commits from many threads share
  /// one sync (group commit).
  machine,
};

/// Where and how the spool keeps events; see the file comment.
///
/// @code
///   config.spool = emissions::SpoolOptions{.dir = "/var/lib/app/spool",
///                                          .durability = emissions::Durability::machine};
/// @endcode
struct SpoolOptions {
  /// The spool's directory, created (mode 0700) if missing; used by one Emitter at a time
  /// (a lock file: a second one gets a ConfigError naming the pid that holds it).
  std::filesystem::path dir;
  Durability durability = Durability::process;  ///< see Durability
  /// The segments' total size on disk. When it is reached, the overflow policies of the
  /// adapters holding the oldest segment apply (docs/SPOOL.md): if all are drop_oldest, they
  /// let go of it (what they had not read is dropped for them); else a commit waits up to the
  /// longest block_timeout of the block adapters for room, then returns overloaded, or, with
  /// no block adapter, is dropped for every adapter (commit() returns ok). A commit larger
  /// than max_bytes - segment_bytes can never fit: invalid_argument at once, nothing dropped.
  std::uint64_t max_bytes = 1ull << 30;
  /// The size of one segment file: at least 1 MiB, at most half of max_bytes (the segment
  /// being written is never deleted, so the budget must hold two).
  std::uint64_t segment_bytes = 64ull << 20;
  /// An adapter that had a position in `dir` and is no longer configured keeps its backlog
  /// (and the disk it holds) unless this is true; EmitterStats::spool_orphaned_events
  /// counts it.
  bool forget_missing_adapters = false;
};

}  // namespace emissions
