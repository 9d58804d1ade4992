#include "emissions/adapters/json_lines.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <exception>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "emissions/event.hpp"
#include "emissions/telemetry.hpp"

namespace emissions::adapters {
namespace {

std::string os_error(int err) {
  return std::error_code(err, std::generic_category()).message();
}

std::string in_quotes(const std::string& path) {
  return "\"" + path + "\"";
}

bool is_pipe_or_socket(int fd) noexcept {
  struct stat st {};
  return ::fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

// Writing to a pipe whose reader has gone raises SIGPIPE, which kills the process unless
// the application ignores it. For the duration of one write this blocks SIGPIPE on the
// calling thread and swallows the one the write raised, so the failure comes back as
// EPIPE only. A SIGPIPE that was already pending for another reason is left alone.
class ScopedSigpipeBlock {
 public:
  ScopedSigpipeBlock() noexcept {
    sigemptyset(&pipe_set_);
    sigaddset(&pipe_set_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    was_pending_ = ::sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
    blocked_ = ::pthread_sigmask(SIG_BLOCK, &pipe_set_, &old_mask_) == 0;
  }
  ~ScopedSigpipeBlock() {
    if (!blocked_) return;
    if (raised_ && !was_pending_) {
      const timespec no_wait{0, 0};
      while (::sigtimedwait(&pipe_set_, nullptr, &no_wait) == -1 && errno == EINTR) {
      }
    }
    ::pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
  }
  ScopedSigpipeBlock(const ScopedSigpipeBlock&) = delete;
  ScopedSigpipeBlock& operator=(const ScopedSigpipeBlock&) = delete;

  void note_epipe() noexcept { raised_ = true; }

 private:
  sigset_t pipe_set_{};
  sigset_t old_mask_{};
  bool was_pending_ = false;
  bool blocked_ = false;
  bool raised_ = false;
};

// Writes all of `data`, retrying partial writes and EINTR. Returns 0 or the errno of the
// failing write; `written` is how many bytes reached the destination.
int write_all(int fd, std::string_view data, bool guard_sigpipe, std::size_t& written) noexcept {
  written = 0;
  std::optional<ScopedSigpipeBlock> guard;
  if (guard_sigpipe) guard.emplace();
  while (written < data.size()) {
    const ssize_t n = ::write(fd, data.data() + written, data.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      if (err == EPIPE && guard) guard->note_epipe();
      return err;
    }
    written += static_cast<std::size_t>(n);
  }
  return 0;
}

}  // namespace

// --- File -------------------------------------------------------------------------------

JsonLines::File::File(File&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

JsonLines::File& JsonLines::File::operator=(File&& other) noexcept {
  if (this != &other) {
    (void)close();
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

JsonLines::File::~File() {
  (void)close();
}

int JsonLines::File::close() noexcept {
  if (fd_ < 0) return 0;
  // No retry on EINTR: on Linux the descriptor is released even then.
  const int result = ::close(std::exchange(fd_, -1));
  return result == 0 ? 0 : errno;
}

// --- JsonLines --------------------------------------------------------------------------

JsonLines::JsonLines(std::string path) : JsonLines(JsonLinesOptions{.path = std::move(path)}) {}

JsonLines::JsonLines(JsonLinesOptions options) : options_(std::move(options)) {
  if (options_.path.empty()) {
    throw ConfigError("JsonLinesOptions.path must not be empty (use \"-\" for standard output)");
  }
  if (options_.name.empty()) {
    throw ConfigError("JsonLinesOptions.name must not be empty (path " + in_quotes(options_.path) +
                      ")");
  }
  if (!options_.flush_each_batch && options_.buffer_bytes == 0) {
    throw ConfigError("JsonLinesOptions.buffer_bytes must be > 0 when flush_each_batch is false");
  }
  if (options_.path == "-") {
    // Our own descriptor for standard output, so closing it never closes fd 1.
    const int fd = ::fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
      throw ConfigError("json_lines: cannot use standard output (path \"-\"): " + os_error(errno));
    }
    file_ = File(fd);
    is_stdout_ = true;
  } else {
    const int fd =
        ::open(options_.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0644);
    if (fd < 0) {
      throw ConfigError("json_lines: cannot open " + in_quotes(options_.path) +
                        " for appending: " + os_error(errno));
    }
    file_ = File(fd);
  }
  guard_sigpipe_ = is_pipe_or_socket(file_.get());
  pending_.reserve(options_.flush_each_batch ? 4096 : options_.buffer_bytes);
}

JsonLines::~JsonLines() {
  (void)terminate(deadline_after(std::chrono::nanoseconds::zero()));
}

void JsonLines::deliver(Delivery delivery) {
  std::vector<Held> done;
  Status written;
  try {
    std::unique_lock lock(mutex_);
    if (terminated_) {
      lock.unlock();
      delivery.fail(
          Status(Errc::closed, "json_lines " + in_quotes(options_.path) + " is terminated"));
      return;
    }
    Held held{std::move(delivery), {}};
    const std::span<const Event> events = held.delivery.events();
    for (std::size_t i = 0; i < events.size(); ++i) {
      try {
        serialize_to(events[i], pending_);  // leaves pending_ as it was when it throws
        pending_.push_back('\n');
        ++pending_events_;
      } catch (const nlohmann::json::exception& e) {
        held.unserializable.emplace_back(
            i, Status(Errc::invalid_argument,
                      "json_lines " + in_quotes(options_.path) + ": event " + events[i].id.str() +
                          " (" + events[i].name.str() + ") cannot be serialized: " + e.what()));
      }
    }
    held_.push_back(std::move(held));
    if (options_.flush_each_batch || pending_.size() >= options_.buffer_bytes) {
      written = write_pending_locked();
      done.swap(held_);
    }
  } catch (const std::exception& e) {
    // Out of memory while building the batch: the delivery (wherever it is now) fails its
    // unsettled events; pending_ still holds whole lines only (serialize_to is
    // all-or-nothing).
    delivery.fail(
        Status(Errc::internal, "json_lines " + in_quotes(options_.path) + ": " + e.what()));
  }
  settle(done, written);
}

void JsonLines::settle(std::vector<Held>& done, const Status& written) noexcept {
  for (Held& held : done) {
    for (auto& [index, error] : held.unserializable)
      held.delivery.fail(index, std::move(error));
    if (written.ok()) {
      held.delivery.ack();
    } else {
      held.delivery.fail(written);
    }
  }
  done.clear();
}

Status JsonLines::flush(Deadline deadline) {
  (void)deadline;  // a write(2) cannot be bounded; see the header
  std::vector<Held> done;
  Status written;
  {
    std::lock_guard lock(mutex_);
    if (pending_.empty() && held_.empty()) return {};
    written = write_pending_locked();
    done.swap(held_);
  }
  settle(done, written);
  return written;
}

Status JsonLines::terminate(Deadline deadline) {
  (void)deadline;
  std::vector<Held> done;
  Status status;
  {
    std::lock_guard lock(mutex_);
    if (terminated_) return {};
    terminated_ = true;
    const std::size_t events = pending_events_;
    status = write_pending_locked();
    done.swap(held_);
    if (const int err = file_.close(); err != 0 && status.ok()) {
      // close(2) can report a delayed write error (NFS, quota).
      status = Status(Errc::unavailable, "json_lines: closing " + in_quotes(options_.path) +
                                             " failed: " + os_error(err));
    }
    if (!status.ok() && events > 0) {
      status = Status(status.code(), status.message() + " (" + std::to_string(events) +
                                         " events were not written)");
    }
  }
  settle(done, status);
  return status;
}

Status JsonLines::write_pending_locked() {
  if (pending_.empty()) return {};
  if (line_broken_) {
    // The last write stopped mid-line: end that fragment so the next line parses.
    pending_.insert(pending_.begin(), '\n');
  }
  if (is_stdout_) {
    // Lines the program printed through stdio before this batch come out first.
    (void)std::fflush(stdout);
  }
  std::size_t written = 0;
  const int err = write_all(file_.get(), pending_, guard_sigpipe_, written);
  Status status;
  if (err != 0) {
    // Nothing written leaves the destination as it was (possibly still mid-line).
    if (written > 0) line_broken_ = pending_[written - 1] != '\n';
    status =
        Status(Errc::unavailable, "json_lines: write to " + in_quotes(options_.path) +
                                      " failed after " + std::to_string(written) + " of " +
                                      std::to_string(pending_.size()) + " bytes: " + os_error(err));
  } else {
    line_broken_ = false;
  }
  pending_.clear();
  pending_events_ = 0;
  return status;
}

}  // namespace emissions::adapters
