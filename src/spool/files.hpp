// Internal: the file operations the spool needs, behind an interface so that tests can
// replace the disk: tests/support/ has a layer that forgets every byte not synced (a
// power loss) and one that fails with ENOSPC or EIO on demand.
//
// Errors are values: every call returns a Status whose message names the operation, the
// file and the errno text ("write /var/spool/x/00000000000000000001.log: No space left on
// device"). I/O errors are `unavailable`; a file that is not there is `not_found`.
// Thread-safety: a FileLayer may be used from any thread; one SpoolFile from one thread at
// a time, except that its mapping may be written by one thread while another reads the
// file with read_at (the page cache is shared on Linux; the test layers do the same).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "emissions/status.hpp"

namespace emissions::detail::spool {

class SpoolFile {
 public:
  SpoolFile() = default;
  SpoolFile(const SpoolFile&) = delete;
  SpoolFile& operator=(const SpoolFile&) = delete;
  virtual ~SpoolFile() = default;  // unmaps and closes; never syncs

  [[nodiscard]] virtual const std::filesystem::path& path() const noexcept = 0;
  virtual Status size(std::uint64_t& out) = 0;
  // Reads up to out.size() bytes at `offset`; `got` < out.size() only at the end of file.
  virtual Status read_at(std::uint64_t offset, std::span<std::uint8_t> out, std::size_t& got) = 0;
  virtual Status write_at(std::uint64_t offset, std::span<const std::uint8_t> data) = 0;
  // Reserves disk blocks for [0, size) (fallocate): a full disk fails here, not later on a
  // write through the mapping (which would raise SIGBUS).
  virtual Status allocate(std::uint64_t size) = 0;
  virtual Status truncate(std::uint64_t size) = 0;
  // Writes what was written (through write_at or the mapping) to stable storage. Bytes at
  // or past `written_below` may be being written through the mapping by another thread
  // and need not be covered (the real file system syncs the whole file anyway; a test
  // layer copies only what it may read).
  virtual Status sync(std::uint64_t written_below = UINT64_MAX) = 0;
  // Maps [0, size) shared and writable; the file must be at least `size` bytes (allocate).
  // The mapping lives until the SpoolFile is destroyed; one mapping per file.
  virtual Status map(std::uint64_t size, std::uint8_t*& out) = 0;
  // Faults in the mapped pages of [offset, offset + length) for writing, ahead of the writes,
  // so that the writer does not take a page fault per fresh page. Changes no byte; best
  // effort (nothing happens where the system cannot). May run while another thread writes
  // through the mapping. Does nothing by default.
  virtual void prefault(std::uint64_t /*offset*/, std::uint64_t /*length*/) noexcept {}
};

// Held while a spool directory is in use (RAII: released when destroyed).
class SpoolLock {
 public:
  SpoolLock() = default;
  SpoolLock(const SpoolLock&) = delete;
  SpoolLock& operator=(const SpoolLock&) = delete;
  virtual ~SpoolLock() = default;
};

class FileLayer {
 public:
  FileLayer() = default;
  FileLayer(const FileLayer&) = delete;
  FileLayer& operator=(const FileLayer&) = delete;
  virtual ~FileLayer() = default;

  // Creates the directory and its parents (mode 0700 for what it creates).
  virtual Status make_dirs(const std::filesystem::path& dir) = 0;
  // Names (not paths) of the regular files in `dir`, in no particular order.
  virtual Status list(const std::filesystem::path& dir, std::vector<std::string>& names) = 0;
  // Opens for reading and writing; `create`: creates it (mode 0600) if missing.
  virtual Status open(const std::filesystem::path& file, bool create,
                      std::unique_ptr<SpoolFile>& out) = 0;
  virtual Status remove(const std::filesystem::path& file) = 0;
  // Makes the directory's entries (files created, renamed, removed) durable.
  virtual Status sync_dir(const std::filesystem::path& dir) = 0;
  // Takes the directory's lock file (`LOCK`, holding the owner's pid) without waiting:
  // `already_exists` naming the directory and the pid that holds it.
  virtual Status lock(const std::filesystem::path& dir, std::unique_ptr<SpoolLock>& out) = 0;
};

// The real file system (POSIX). Stateless: each call makes a new one.
[[nodiscard]] std::shared_ptr<FileLayer> posix_files();

// "<what> <path>: <strerror(err)>" as `unavailable` (`not_found` for ENOENT).
[[nodiscard]] Status io_error(const char* what, const std::filesystem::path& path, int err);

}  // namespace emissions::detail::spool
