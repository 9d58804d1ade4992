// read_json_lines(): a file written by JsonLines, back into events (json_lines.hpp).
//
// The file is read in chunks with read(2) and cut into lines here, so that a last line
// without its newline (a write cut short) is known as such. Events are parsed into a local
// vector and appended to the caller's only once every line has parsed: all or nothing.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <exception>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "emissions/adapters/json_lines.hpp"
#include "emissions/event.hpp"
#include "events/envelope_parse.hpp"

namespace emissions::adapters {
namespace {

constexpr std::size_t kChunk = 64 * 1024;

// Closes a descriptor on scope exit.
class ReadFd {
 public:
  explicit ReadFd(int fd) noexcept : fd_(fd) {}
  ~ReadFd() {
    if (fd_ >= 0) (void)::close(fd_);
  }
  ReadFd(const ReadFd&) = delete;
  ReadFd& operator=(const ReadFd&) = delete;
  [[nodiscard]] int get() const noexcept { return fd_; }

 private:
  int fd_;
};

std::string os_error(int err) {
  return std::error_code(err, std::generic_category()).message();
}

bool is_blank(std::string_view line) noexcept {
  return std::all_of(line.begin(), line.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

}  // namespace

Status read_json_lines(const std::filesystem::path& path, std::vector<Event>& out) {
  try {
    const std::string where = path.string();
    const ReadFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (fd.get() < 0) {
      const int err = errno;
      const std::string message = "cannot open \"" + where + "\": " + os_error(err);
      if (err == ENOENT || err == ENOTDIR) return Status(Errc::not_found, message);
      return Status(Errc::unavailable, message);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) == 0 && S_ISDIR(st.st_mode)) {
      return Status(Errc::invalid_argument, "\"" + where + "\" is a directory");
    }

    std::vector<Event> events;
    std::string pending;  // the line being read, up to the next '\n'
    std::size_t line_number = 0;
    std::string error;
    // Parses one line (without its '\n'); false, with `error` set, when it is malformed.
    const auto take = [&](std::string_view line, bool has_newline) {
      ++line_number;
      if (is_blank(line)) return true;
      std::optional<Event> event = detail::parse_envelope(line, error);
      if (event) {
        events.push_back(std::move(*event));
        return true;
      }
      error = where + ":" + std::to_string(line_number) + ": " + error;
      if (!has_newline) {
        error += " (the last line has no newline: a write cut short? Remove it to read the rest)";
      }
      return false;
    };

    std::string chunk(kChunk, '\0');
    for (;;) {
      const ssize_t n = ::read(fd.get(), chunk.data(), chunk.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        if (err == EISDIR)
          return Status(Errc::invalid_argument, "\"" + where + "\" is a directory");
        return Status(Errc::unavailable, "reading \"" + where + "\" failed after line " +
                                             std::to_string(line_number) + ": " + os_error(err));
      }
      if (n == 0) break;
      std::string_view data(chunk.data(), static_cast<std::size_t>(n));
      for (std::size_t newline = data.find('\n'); newline != std::string_view::npos;
           newline = data.find('\n')) {
        bool ok = false;
        if (pending.empty()) {
          ok = take(data.substr(0, newline), true);
        } else {
          pending.append(data.substr(0, newline));
          ok = take(pending, true);
          pending.clear();
        }
        if (!ok) return Status(Errc::invalid_argument, std::move(error));
        data.remove_prefix(newline + 1);
      }
      pending.append(data);
    }
    if (!pending.empty() && !take(pending, false)) {
      return Status(Errc::invalid_argument, std::move(error));
    }
    out.reserve(out.size() + events.size());
    std::move(events.begin(), events.end(), std::back_inserter(out));
    return {};
  } catch (const std::exception& e) {
    // Out of memory (a Status message cannot be built either, then: the code says it).
    try {
      return Status(Errc::internal, std::string("read_json_lines: ") + e.what());
    } catch (...) {
      return Status(Errc::internal, std::string());
    }
  }
}

}  // namespace emissions::adapters
