#include "spool/files.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>

namespace emissions::detail::spool {

Status io_error(const char* what, const std::filesystem::path& path, int err) {
  return Status(
      err == ENOENT ? Errc::not_found : Errc::unavailable,
      std::string(what) + " " + path.string() + ": " + std::generic_category().message(err));
}

namespace {

// A file descriptor closed on destruction; retries EINTR where a call can see it.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  [[nodiscard]] int get() const noexcept { return fd_; }

 private:
  int fd_ = -1;
};

class PosixFile final : public SpoolFile {
 public:
  PosixFile(std::filesystem::path path, Fd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  ~PosixFile() override {
    if (map_ != nullptr) ::munmap(map_, map_size_);
  }

  [[nodiscard]] const std::filesystem::path& path() const noexcept override { return path_; }

  Status size(std::uint64_t& out) override {
    struct stat st {};
    if (::fstat(fd_.get(), &st) != 0) return io_error("stat", path_, errno);
    out = static_cast<std::uint64_t>(st.st_size);
    return {};
  }

  Status read_at(std::uint64_t offset, std::span<std::uint8_t> out, std::size_t& got) override {
    got = 0;
    while (got < out.size()) {
      const ssize_t n =
          ::pread(fd_.get(), out.data() + got, out.size() - got, static_cast<off_t>(offset + got));
      if (n < 0) {
        if (errno == EINTR) continue;
        return io_error("read", path_, errno);
      }
      if (n == 0) break;  // end of file
      got += static_cast<std::size_t>(n);
    }
    return {};
  }

  Status write_at(std::uint64_t offset, std::span<const std::uint8_t> data) override {
    std::size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::pwrite(fd_.get(), data.data() + done, data.size() - done,
                                 static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return io_error("write", path_, errno);
      }
      done += static_cast<std::size_t>(n);
    }
    return {};
  }

  Status allocate(std::uint64_t size) override {
    // posix_fallocate returns the error instead of setting errno.
    const int err = ::posix_fallocate(fd_.get(), 0, static_cast<off_t>(size));
    if (err != 0) return io_error("allocate", path_, err);
    return {};
  }

  Status truncate(std::uint64_t size) override {
    if (::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) {
      return io_error("truncate", path_, errno);
    }
    return {};
  }

  Status sync(std::uint64_t /*written_below*/) override {
    // Through the mapping or write(): the page cache is one, so fdatasync covers both.
    if (::fdatasync(fd_.get()) != 0) return io_error("sync", path_, errno);
    return {};
  }

  Status map(std::uint64_t size, std::uint8_t*& out) override {
    if (map_ != nullptr) return Status(Errc::internal, "map " + path_.string() + ": mapped twice");
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
    if (p == MAP_FAILED) return io_error("map", path_, errno);
    map_ = p;
    map_size_ = size;
    out = static_cast<std::uint8_t*>(p);
    return {};
  }

  void prefault(std::uint64_t offset, std::uint64_t length) noexcept override {
    // MADV_POPULATE_WRITE: Linux 5.14. An older kernel refuses it (EINVAL): not tried again.
#ifdef MADV_POPULATE_WRITE
    if (map_ == nullptr || offset >= map_size_ || no_populate_.load(std::memory_order_relaxed)) {
      return;
    }
    const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    const std::uint64_t from = offset / page * page;
    const std::uint64_t to = std::min<std::uint64_t>(offset + length, map_size_);
    if (to <= from) return;
    if (::madvise(static_cast<char*>(map_) + from, to - from, MADV_POPULATE_WRITE) != 0 &&
        errno == EINVAL) {
      no_populate_.store(true, std::memory_order_relaxed);
    }
#else
    (void)offset;
    (void)length;
#endif
  }

 private:
  std::filesystem::path path_;
  Fd fd_;
  void* map_ = nullptr;
  std::size_t map_size_ = 0;
  std::atomic<bool> no_populate_{false};  // prefault() is not supported here
};

class PosixLock final : public SpoolLock {
 public:
  explicit PosixLock(Fd fd) : fd_(std::move(fd)) {}
  // Closing the descriptor releases the flock.

 private:
  Fd fd_;
};

class PosixFiles final : public FileLayer {
 public:
  Status make_dirs(const std::filesystem::path& dir) override {
    std::error_code ec;
    const bool created = std::filesystem::create_directories(dir, ec);
    if (ec) return io_error("create directory", dir, ec.value());
    if (created) {  // owner only, whatever the umask
      std::filesystem::permissions(dir, std::filesystem::perms::owner_all,
                                   std::filesystem::perm_options::replace, ec);
      if (ec) return io_error("set the mode of", dir, ec.value());
    }
    if (!std::filesystem::is_directory(dir, ec)) return io_error("create directory", dir, ENOTDIR);
    return {};
  }

  Status list(const std::filesystem::path& dir, std::vector<std::string>& names) override {
    names.clear();
    std::error_code ec;
    std::filesystem::directory_iterator it(dir, ec);
    if (ec) return io_error("list", dir, ec.value());
    for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
      if (it->is_regular_file(ec)) names.push_back(it->path().filename().string());
    }
    if (ec) return io_error("list", dir, ec.value());
    return {};
  }

  Status open(const std::filesystem::path& file, bool create,
              std::unique_ptr<SpoolFile>& out) override {
    const int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0);
    const int fd = ::open(file.c_str(), flags, 0600);
    if (fd < 0) return io_error("open", file, errno);
    out = std::make_unique<PosixFile>(file, Fd(fd));
    return {};
  }

  Status remove(const std::filesystem::path& file) override {
    if (::unlink(file.c_str()) != 0) return io_error("remove", file, errno);
    return {};
  }

  Status sync_dir(const std::filesystem::path& dir) override {
    Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd.get() < 0) return io_error("open directory", dir, errno);
    if (::fsync(fd.get()) != 0) return io_error("sync directory", dir, errno);
    return {};
  }

  Status lock(const std::filesystem::path& dir, std::unique_ptr<SpoolLock>& out) override {
    const std::filesystem::path file = dir / "LOCK";
    Fd fd(::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (fd.get() < 0) return io_error("open", file, errno);
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK) return io_error("lock", file, errno);
      char text[32] = {};
      const ssize_t n = ::pread(fd.get(), text, sizeof text - 1, 0);
      std::string holder = n > 0 ? std::string(text, static_cast<std::size_t>(n)) : "";
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' '))
        holder.pop_back();
      return Status(Errc::already_exists,
                    "spool directory " + dir.string() + " is in use by process " +
                        (holder.empty() ? std::string("(unknown pid)") : holder));
    }
    // Ours: record our pid for whoever is refused next (best effort: the lock is what counts).
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd.get(), 0) == 0) {
      (void)::pwrite(fd.get(), pid.data(), pid.size(), 0);
    }
    out = std::make_unique<PosixLock>(std::move(fd));
    return {};
  }
};

}  // namespace

std::shared_ptr<FileLayer> posix_files() {
  return std::make_shared<PosixFiles>();
}

}  // namespace emissions::detail::spool
