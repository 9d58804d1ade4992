/// @file
/// emissions/adapters/json_lines.hpp: an adapter that appends one JSON envelope per line
/// (JSON Lines) to a file or to standard output.
///
/// @code
///   emissions::Config config;
///   config.add_adapter(std::make_shared<emissions::adapters::JsonLines>("events.jsonl"));
///   // or, with options:
///   config.add_adapter(std::make_shared<emissions::adapters::JsonLines>(
///       emissions::adapters::JsonLinesOptions{.path = "-", .name = "stdout"}));
/// @endcode
///
/// Each line is `emissions::serialize(event)` (see event.hpp):
/// @code
///   {"emitted_at":"2026-11-21T01:37:33.123456Z","id":"018f...","metadata":{},
///    "name":"order_created","payload":{"id":1}}
/// @endcode
///
/// The file is opened for appending at construction, so a bad path fails at start-up
/// rather than at the first event. Each batch is written with a single write(2) on a file
/// opened with O_APPEND: on a local file system, lines from several processes appending to
/// the same file never interleave within a batch.
///
/// read_json_lines() reads such a file back (dead letters to inspect or replay):
/// @code
///   std::vector<emissions::Event> events;
///   if (emissions::Status s = emissions::adapters::read_json_lines("dead.jsonl", events); !s.ok())
///     log(s.to_string());  // "invalid_argument: dead.jsonl:3: ..."
/// @endcode
#pragma once

#include <cstddef>
#include <filesystem>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "emissions/delivery.hpp"
#include "emissions/event.hpp"
#include "emissions/status.hpp"

namespace emissions::adapters {

/// How a JsonLines adapter writes. A plain struct for designated initializers:
///
/// @code
///   JsonLinesOptions{.path = "/var/log/app/events.jsonl", .flush_each_batch = false}
/// @endcode
struct JsonLinesOptions {
  /// The file to append to (created with mode 0644 when missing), or "-" for standard
  /// output. The directory must exist. Must not be empty.
  std::string path;
  /// The adapter's name in telemetry and statistics. Must not be empty.
  std::string name = "json_lines";
  /// true: every batch is written when it is delivered. false: lines collect in memory and
  /// are written once `buffer_bytes` is reached, when the pipeline asks (drain(), a full
  /// window of deliveries) and at terminate(); fewer syscalls. Either way an event counts
  /// as delivered only once its line is written, so drain() returns after the write; lines
  /// still in memory are lost if the process dies.
  bool flush_each_batch = true;
  /// With flush_each_batch == false: write once this many bytes are pending (> 0).
  std::size_t buffer_bytes = 64 * 1024;
};

/// Appends each event's envelope as one line. Owns its file descriptor.
///
/// @code
///   auto sink = std::make_shared<emissions::adapters::JsonLines>("-");  // to stdout
/// @endcode
///
/// Settlement: asynchronous (an AsyncAdapter), so that each event is settled by itself: an
/// event that cannot be serialized fails alone (invalid_argument) while the others of its
/// batch are written, and with flush_each_batch == false events are acknowledged when
/// their lines are written, not before.
///
/// Thread-safety: all members may be called from any thread; calls are serialized by an
/// internal mutex (uncontended in the pipeline, where one consumer calls it), and
/// settlements (which may run telemetry handlers) happen after it is released. With
/// AdapterOptions::concurrency > 1 the workers take turns, so more workers buy nothing.
class JsonLines final : public AsyncAdapter {
 public:
  /// Opens `options.path` for appending. Throws ConfigError naming the path and the OS
  /// error (missing directory, no permission, a directory) or the invalid option.
  explicit JsonLines(JsonLinesOptions options);
  /// Same as `JsonLines(JsonLinesOptions{.path = path})`.
  explicit JsonLines(std::string path);
  /// terminate(), if it has not been called.
  ~JsonLines() override;
  JsonLines(const JsonLines&) = delete;
  JsonLines& operator=(const JsonLines&) = delete;

  /// Serializes the batch into a reused buffer; writes it with one write(2) (retried on a
  /// partial write or EINTR) at once, or later (see flush_each_batch). Blocks while the
  /// destination blocks. Never throws, and a closed pipe never raises SIGPIPE.
  /// Per event: delivered once its line is written; invalid_argument when it cannot be
  /// serialized (a string that is not valid UTF-8: the others are written); unavailable
  /// when the write fails (disk full, closed pipe, ...: the lines of that write fail, some
  /// may have been written, and the next write starts on a fresh line); closed after
  /// terminate(); internal when memory runs out.
  void deliver(Delivery delivery) override;

  /// Writes what is pending and settles it. The write's error, if it failed. Blocks while
  /// the destination blocks (a write(2) is not interrupted at `deadline`).
  Status flush(Deadline deadline) override;

  /// Writes anything pending and closes the file; later deliveries fail with closed.
  /// Idempotent. Returns the write's or close's error, naming how many events were lost.
  /// Like flush(), does not stop a blocked write(2) at `deadline`.
  Status terminate(Deadline deadline) override;

  /// `options.name`.
  [[nodiscard]] std::string_view name() const override { return options_.name; }
  /// The path given in the options ("-" for standard output).
  [[nodiscard]] const std::string& path() const noexcept { return options_.path; }

 private:
  // Owns a file descriptor; closes it on destruction.
  class File {
   public:
    File() noexcept = default;
    explicit File(int fd) noexcept : fd_(fd) {}
    File(File&& other) noexcept;
    File& operator=(File&& other) noexcept;
    File(const File&) = delete;
    File& operator=(const File&) = delete;
    ~File();

    [[nodiscard]] int get() const noexcept { return fd_; }
    [[nodiscard]] bool is_open() const noexcept { return fd_ >= 0; }
    // Closes now; returns the errno of close(2), 0 on success.
    int close() noexcept;

   private:
    int fd_ = -1;
  };

  // A delivery whose lines are in pending_, with the events that could not be serialized.
  struct Held {
    Delivery delivery;
    std::vector<std::pair<std::size_t, Status>> unserializable;
  };

  // Writes `pending_` (holding mutex_). Clears it either way.
  Status write_pending_locked();
  // Settles deliveries taken out of held_ after their lines were written with `written`.
  static void settle(std::vector<Held>& done, const Status& written) noexcept;

  JsonLinesOptions options_;
  std::mutex mutex_;
  File file_;
  std::string pending_;  // lines not yet written; its capacity is reused across batches
  std::size_t pending_events_ = 0;
  std::vector<Held> held_;  // deliveries whose lines are in pending_
  bool is_stdout_ = false;
  bool guard_sigpipe_ = false;  // the destination is a pipe or socket
  bool line_broken_ = false;    // a failed write left the destination mid-line
  bool terminated_ = false;
};

/// Reads a file written by JsonLines back into events, appending them to `out` in file
/// order, with their ids, names, payloads, metadata and times as written.
///
/// Precision: JsonLines writes `emitted_at` in microseconds (floored), while an Event holds
/// the system clock's resolution (nanoseconds on Linux), so a round trip keeps `emitted_at`
/// to the microsecond: `floor<microseconds>(read) == floor<microseconds>(written)`. Every
/// other field comes back equal. A hand-built event whose metadata was null is written, and
/// so read back, as `{}`.
///
/// Format: one envelope per line, exactly the five keys of `serialize(event)`: `emitted_at`
/// (`YYYY-MM-DDTHH:MM:SS[.f...]Z`, UTC, 0 to 9 fraction digits), `id` (a canonical UUID),
/// `metadata` (an object), `name` (a non-empty string) and `payload` (any value). Lines that
/// are empty or only blanks are skipped (JsonLines never writes one; a hand-edited file may
/// end with one). A last line without its newline is read like any other when it is a
/// whole envelope.
///
/// Errors (then `out` is left exactly as it was: all or nothing):
/// - `not_found`: the file does not exist (or a directory on its path does not);
/// - `invalid_argument`: the path is a directory, or a line is not an envelope; the
///   message is `<path>:<line>: <what is wrong>`, 1-based, e.g. `dead.jsonl:3: missing key
///   "id"`, and says when the bad line is the last one and has no newline (a write cut short
///   by a crash: remove that line to read the rest);
/// - `unavailable`: any other error opening or reading the file (permissions, I/O);
/// - `internal`: out of memory.
///
/// Reads the whole file before it returns; memory is about the file's size in events. Never
/// throws. Thread-safe (it shares nothing); the file must not be written meanwhile.
[[nodiscard]] Status read_json_lines(const std::filesystem::path& path, std::vector<Event>& out);

}  // namespace emissions::adapters
