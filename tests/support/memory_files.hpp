// Test-only: a spool FileLayer held in memory that models what a power loss keeps.
//
// Each file has the bytes a process sees (`current`) and the bytes on stable storage
// (`durable`, updated by sync()); each directory entry exists for the process at once and
// on stable storage only after sync_dir(). power_loss() throws away everything that was
// not synced, as a machine that lost power would; write_back() and write_back_metadata()
// stand for what the kernel writes back on its own before that, and stable_copy() takes a
// power loss at any moment, even while a spool writes. A byte budget turns allocations and
// writes beyond it into ENOSPC, and fail() makes the next calls of one operation fail with
// an errno, so tests can drive disk-full and EIO paths.
//
// Thread-safe (one mutex). Destroy every spool object using the layer before power_loss()
// (the process died first): a mapping does not survive it. A mapping is the file's own storage,
// reserved at map() so it never moves; like a real mapping it is not synchronised with read_at (the
// spool only reads below what its writer published under its own lock).
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "spool/files.hpp"

namespace emissions::testing_support {

class MemoryFiles final : public detail::spool::FileLayer {
 public:
  struct Node {
    std::vector<std::uint8_t> current;
    std::vector<std::uint8_t> durable;
    bool mapped = false;
  };

  // Forgets every byte not synced and every directory entry not synced.
  void power_loss() {
    std::lock_guard lock(mutex_);
    entries_ = durable_entries_;
    for (auto& [path, node] : entries_)
      node->current = node->durable;
  }

  // A new layer holding what stable storage holds now: the state a power loss at this
  // moment leaves. Unlike power_loss() it may be called while spool objects use this layer
  // (it reads only synced bytes, which are written under the layer's mutex).
  std::shared_ptr<MemoryFiles> stable_copy() {
    std::lock_guard lock(mutex_);
    auto out = std::make_shared<MemoryFiles>();
    for (const auto& [path, node] : durable_entries_) {
      auto copy = std::make_shared<Node>();
      copy->current = node->durable;
      copy->durable = node->durable;
      out->entries_[path] = copy;
      out->durable_entries_[path] = copy;
    }
    return out;
  }

  // A new layer with the same files, both what the process sees and what stable storage
  // holds, to try several power losses from one state. No spool object may use this layer.
  std::shared_ptr<MemoryFiles> copy() {
    std::lock_guard lock(mutex_);
    auto out = std::make_shared<MemoryFiles>();
    std::map<const Node*, std::shared_ptr<Node>> copies;
    auto copy_of = [&](const std::shared_ptr<Node>& node) {
      auto& copy = copies[node.get()];
      if (!copy) copy = std::make_shared<Node>(Node{node->current, node->durable, false});
      return copy;
    };
    for (const auto& [path, node] : entries_)
      out->entries_[path] = copy_of(node);
    for (const auto& [path, node] : durable_entries_)
      out->durable_entries_[path] = copy_of(node);
    out->capacity_ = capacity_;
    return out;
  }

  // What the kernel writes back on its own between syncs, in any order. write_back_metadata:
  // every directory entry and every file's size reach stable storage (bytes not written back
  // read as zeros, as preallocated blocks do). write_back: the bytes [offset, offset +
  // length) of `path` do (dirty pages). No spool object may be writing the file.
  void write_back_metadata() {
    std::lock_guard lock(mutex_);
    durable_entries_ = entries_;
    for (auto& [path, node] : entries_)
      node->durable.resize(node->current.size(), 0);
  }
  void write_back(const std::filesystem::path& file, std::uint64_t offset, std::uint64_t length) {
    std::lock_guard lock(mutex_);
    const auto it = entries_.find(file.string());
    if (it == entries_.end()) return;
    Node& node = *it->second;
    const std::uint64_t end = std::min<std::uint64_t>(offset + length, node.current.size());
    if (offset >= end) return;
    if (node.durable.size() < end) node.durable.resize(end, 0);
    std::copy(node.current.begin() + static_cast<std::ptrdiff_t>(offset),
              node.current.begin() + static_cast<std::ptrdiff_t>(end),
              node.durable.begin() + static_cast<std::ptrdiff_t>(offset));
  }

  // Allocations and writes that would make the files larger than `bytes` fail with ENOSPC.
  void set_capacity(std::uint64_t bytes) {
    std::lock_guard lock(mutex_);
    capacity_ = bytes;
  }

  // Every file sync from now on takes at least `delay` (a slow disk), spent outside the
  // layer's lock.
  void set_sync_delay(std::chrono::microseconds delay) {
    std::lock_guard lock(mutex_);
    sync_delay_ = delay;
  }
  // File syncs so far (not directory syncs), failed ones included.
  [[nodiscard]] std::uint64_t syncs() {
    std::lock_guard lock(mutex_);
    return syncs_;
  }

  // The next `times` calls of `operation` ("open", "allocate", "write", "sync", "truncate",
  // "map", "remove", "sync_dir", "list") fail with `err`.
  void fail(const std::string& operation, int err, int times = 1) {
    std::lock_guard lock(mutex_);
    failures_[operation] = {err, times};
  }

  // The node behind a path (nullptr when it does not exist), to corrupt its bytes.
  std::shared_ptr<Node> node(const std::filesystem::path& path) {
    std::lock_guard lock(mutex_);
    const auto it = entries_.find(path.string());
    return it == entries_.end() ? nullptr : it->second;
  }

  Status make_dirs(const std::filesystem::path& /*dir*/) override { return {}; }

  Status list(const std::filesystem::path& dir, std::vector<std::string>& names) override {
    std::lock_guard lock(mutex_);
    if (int err = take_failure("list")) return detail::spool::io_error("list", dir, err);
    names.clear();
    for (const auto& [path, node] : entries_) {
      const std::filesystem::path p(path);
      if (p.parent_path() == dir) names.push_back(p.filename().string());
    }
    return {};
  }

  Status open(const std::filesystem::path& file, bool create,
              std::unique_ptr<detail::spool::SpoolFile>& out) override {
    std::lock_guard lock(mutex_);
    if (int err = take_failure("open")) return detail::spool::io_error("open", file, err);
    auto it = entries_.find(file.string());
    if (it == entries_.end()) {
      if (!create) return detail::spool::io_error("open", file, ENOENT);
      it = entries_.emplace(file.string(), std::make_shared<Node>()).first;
    }
    out = std::make_unique<File>(*this, file, it->second);
    return {};
  }

  Status remove(const std::filesystem::path& file) override {
    std::lock_guard lock(mutex_);
    if (int err = take_failure("remove")) return detail::spool::io_error("remove", file, err);
    if (entries_.erase(file.string()) == 0) return detail::spool::io_error("remove", file, ENOENT);
    return {};
  }

  Status sync_dir(const std::filesystem::path& dir) override {
    std::lock_guard lock(mutex_);
    if (int err = take_failure("sync_dir")) {
      return detail::spool::io_error("sync directory", dir, err);
    }
    for (auto it = durable_entries_.begin(); it != durable_entries_.end();) {
      it = std::filesystem::path(it->first).parent_path() == dir ? durable_entries_.erase(it)
                                                                 : std::next(it);
    }
    for (const auto& [path, node] : entries_) {
      if (std::filesystem::path(path).parent_path() == dir) durable_entries_[path] = node;
    }
    return {};
  }

  Status lock(const std::filesystem::path& dir,
              std::unique_ptr<detail::spool::SpoolLock>& out) override {
    std::lock_guard lock(mutex_);
    if (locked_.count(dir.string()) != 0) {
      return Status(Errc::already_exists,
                    "spool directory " + dir.string() + " is in use by process (this one)");
    }
    locked_[dir.string()] = true;
    out = std::make_unique<Lock>(*this, dir.string());
    return {};
  }

 private:
  class Lock final : public detail::spool::SpoolLock {
   public:
    Lock(MemoryFiles& owner, std::string dir) : owner_(owner), dir_(std::move(dir)) {}
    ~Lock() override {
      std::lock_guard lock(owner_.mutex_);
      owner_.locked_.erase(dir_);
    }

   private:
    MemoryFiles& owner_;
    std::string dir_;
  };

  class File final : public detail::spool::SpoolFile {
   public:
    File(MemoryFiles& owner, std::filesystem::path path, std::shared_ptr<Node> node)
        : owner_(owner), path_(std::move(path)), node_(std::move(node)) {}
    ~File() override {
      std::lock_guard lock(owner_.mutex_);
      if (mapped_) node_->mapped = false;
    }
    [[nodiscard]] const std::filesystem::path& path() const noexcept override { return path_; }
    Status size(std::uint64_t& out) override {
      std::lock_guard lock(owner_.mutex_);
      out = node_->current.size();
      return {};
    }
    Status read_at(std::uint64_t offset, std::span<std::uint8_t> out, std::size_t& got) override {
      std::lock_guard lock(owner_.mutex_);
      got = 0;
      if (int err = owner_.take_failure("read")) return detail::spool::io_error("read", path_, err);
      if (offset >= node_->current.size()) return {};
      got = std::min<std::size_t>(out.size(), node_->current.size() - offset);
      std::copy_n(node_->current.begin() + static_cast<std::ptrdiff_t>(offset), got, out.begin());
      return {};
    }
    Status write_at(std::uint64_t offset, std::span<const std::uint8_t> data) override {
      std::lock_guard lock(owner_.mutex_);
      if (int err = owner_.take_failure("write")) {
        return detail::spool::io_error("write", path_, err);
      }
      if (offset + data.size() > node_->current.size()) {
        if (Status s = owner_.grow(*node_, offset + data.size(), path_, "write"); !s) return s;
      }
      std::copy(data.begin(), data.end(),
                node_->current.begin() + static_cast<std::ptrdiff_t>(offset));
      return {};
    }
    Status allocate(std::uint64_t size) override {
      std::lock_guard lock(owner_.mutex_);
      if (int err = owner_.take_failure("allocate")) {
        return detail::spool::io_error("allocate", path_, err);
      }
      if (size <= node_->current.size()) return {};
      return owner_.grow(*node_, size, path_, "allocate");
    }
    Status truncate(std::uint64_t size) override {
      std::lock_guard lock(owner_.mutex_);
      if (int err = owner_.take_failure("truncate")) {
        return detail::spool::io_error("truncate", path_, err);
      }
      if (node_->mapped && size > node_->current.capacity()) {
        return Status(Errc::internal, "memory file: cannot grow a mapped file past its mapping");
      }
      node_->current.resize(size, 0);
      return {};
    }
    Status sync(std::uint64_t written_below) override {
      std::chrono::microseconds delay{0};
      {
        std::lock_guard lock(owner_.mutex_);
        ++owner_.syncs_;
        delay = owner_.sync_delay_;
      }
      if (delay.count() > 0) std::this_thread::sleep_for(delay);
      std::lock_guard lock(owner_.mutex_);
      if (int err = owner_.take_failure("sync")) return detail::spool::io_error("sync", path_, err);
      // Bytes past `written_below` may be being written through the mapping: they stay as
      // the disk last had them (like pages not yet written back).
      const std::size_t size = node_->current.size();
      const auto upto = static_cast<std::ptrdiff_t>(std::min<std::uint64_t>(written_below, size));
      node_->durable.resize(size, 0);
      std::copy(node_->current.begin(), node_->current.begin() + upto, node_->durable.begin());
      return {};
    }
    Status map(std::uint64_t size, std::uint8_t*& out) override {
      std::lock_guard lock(owner_.mutex_);
      if (int err = owner_.take_failure("map")) return detail::spool::io_error("map", path_, err);
      if (size > node_->current.size()) {
        return Status(Errc::internal, "memory file: mapping past the end of " + path_.string());
      }
      node_->current.reserve(size);
      node_->mapped = true;
      mapped_ = true;
      out = node_->current.data();
      return {};
    }

   private:
    MemoryFiles& owner_;
    std::filesystem::path path_;
    std::shared_ptr<Node> node_;
    bool mapped_ = false;
  };

  // With mutex_ held: the errno to fail `operation` with now, or 0.
  int take_failure(const std::string& operation) {
    const auto it = failures_.find(operation);
    if (it == failures_.end() || it->second.second <= 0) return 0;
    --it->second.second;
    return it->second.first;
  }

  // With mutex_ held.
  Status grow(Node& node, std::uint64_t size, const std::filesystem::path& path, const char* what) {
    std::uint64_t used = 0;
    for (const auto& [p, n] : entries_)
      used += n->current.size();
    if (used - node.current.size() + size > capacity_) {
      return detail::spool::io_error(what, path, ENOSPC);
    }
    if (node.mapped && size > node.current.capacity()) {
      return Status(Errc::internal, "memory file: cannot grow a mapped file past its mapping");
    }
    node.current.resize(size, 0);
    return {};
  }

  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Node>> entries_;
  std::map<std::string, std::shared_ptr<Node>> durable_entries_;
  std::map<std::string, std::pair<int, int>> failures_;
  std::map<std::string, bool> locked_;
  std::uint64_t capacity_ = UINT64_MAX;
  std::chrono::microseconds sync_delay_{0};
  std::uint64_t syncs_ = 0;
};

}  // namespace emissions::testing_support
