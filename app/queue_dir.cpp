#include "app/queue_dir.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <system_error>
#include <thread>

#include "core/log.hpp"

namespace botgate {
namespace {

namespace fs = std::filesystem;

constexpr const char* kLayoutFile = "botgate-queue";

// The layout line: the shard count and the placement hash (a directory written with another
// hash would mix orders too).
std::string layout_of(int shards) {
  return "shards=" + std::to_string(shards) + " placement=fnv1a64-fmix64";
}

// The shard-N directories found in the queue directory, by N.
struct ShardDirs {
  std::map<std::size_t, bool> dirs;  // N -> holds data (a file that is not empty)
  bool any_data() const {
    for (const auto& [_, data] : dirs) {
      if (data) return true;
    }
    return false;
  }
  // Exactly shard-0 .. shard-(shards-1).
  bool exactly(int shards) const {
    return dirs.size() == static_cast<std::size_t>(shards) &&
           (dirs.empty() || dirs.rbegin()->first + 1 == dirs.size());
  }
};

ShardDirs find_shard_dirs(const fs::path& dir) {
  ShardDirs out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory(ec) || !name.starts_with("shard-")) continue;
    std::size_t n = 0;
    const char* first = name.data() + 6;
    const char* last = name.data() + name.size();
    const auto [end, err] = std::from_chars(first, last, n);
    if (err != std::errc{} || end != last || first == last) continue;
    bool data = false;
    for (const auto& f : fs::recursive_directory_iterator(entry.path(), ec)) {
      if (f.is_regular_file(ec) && f.file_size(ec) > 0) {
        data = true;
        break;
      }
    }
    out.dirs[n] = data;
  }
  return out;
}

// Events are placed by hash(conversation) % shards, so reopening a queue with another shard
// count would break per-conversation order, and shards beyond the new count would never be
// read: refuse it. `recorded`: whether the directory already records a layout (a new one is
// written by record_layout once the shards opened).
bool check_layout(const fs::path& dir, int shards, bool& recorded) {
  const std::string want = layout_of(shards);
  std::ifstream in(dir / kLayoutFile);
  const bool file = static_cast<bool>(in);
  std::string have;
  if (file) std::getline(in, have);
  while (!have.empty() && std::isspace(static_cast<unsigned char>(have.back()))) have.pop_back();
  const ShardDirs found = find_shard_dirs(dir);
  recorded = !have.empty();
  if (have == want) {
    // A queue that recorded its layout has every shard's logs: what is gone was lost.
    for (int i = 0; i < shards; ++i) {
      const fs::path shard = dir / ("shard-" + std::to_string(i));
      for (const fs::path& part : {shard, shard / "events", shard / "dead"}) {
        std::error_code ec;
        if (fs::exists(part, ec) || ec) continue;
        log::error(
            "part of a shard's queue is missing: what it held (queued events, dead "
            "letters, dedup ids) is lost",
            {{"shard", i}, {"missing", part.string()}, {"layout", want}});
        break;
      }
    }
    for (const auto& [n, data] : found.dirs) {
      if (n >= static_cast<std::size_t>(shards) && data) {
        log::warn("a shard directory beyond queue.shards is ignored",
                  {{"dir", dir.string()}, {"shard", n}, {"layout", want}});
      }
    }
    return true;
  }
  // No layout recorded: a new directory, or one whose layout file is gone or empty (an older
  // botgate left it empty when its first start could not write it, on a full disk). Shard
  // directories holding data say a count was used: only that same count may open them.
  if (have.empty()) {
    if (!found.any_data() || found.exactly(shards)) {
      if (file) {
        log::warn("the queue directory's layout file is empty: recording it again",
                  {{"dir", dir.string()}, {"layout", want}});
      } else if (found.any_data()) {
        log::warn("the queue directory's layout file is missing: recording it again",
                  {{"dir", dir.string()}, {"layout", want}});
      }
      return true;
    }
    have = "no layout file, " + std::to_string(found.dirs.size()) + " shard directories";
  }
  log::error("queue.shards (or the placement hash) differs from the queue directory's",
             {{"dir", dir.string()},
              {"config", want},
              {"directory", have},
              {"hint", "deliver the backlog with the old shard count first, or use a new dir"}});
  return false;
}

// Written whole or not at all (a temporary file, synced, renamed over, the directory synced): a
// full disk or a crash must not leave a layout file that pins nothing or half a line.
bool record_layout(const fs::path& dir, int shards) {
  const fs::path file = dir / kLayoutFile;
  const fs::path temp = dir / (std::string(kLayoutFile) + ".tmp");
  const std::string line = layout_of(shards) + '\n';
  const char* step = "create";
  int err = 0;
  {
    storage::io::Fd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0) {
      err = errno;
    } else {
      try {
        step = "write";
        storage::io::write_all(fd.get(), line.data(), line.size(), temp);
        step = "sync";
        if (::fsync(fd.get()) != 0) err = errno;
      } catch (const std::system_error& e) {
        err = e.code().value();
      }
    }
  }
  if (err == 0) {
    step = "rename";
    if (::rename(temp.c_str(), file.c_str()) != 0) err = errno;
  }
  if (err != 0) {
    std::error_code ignored;
    fs::remove(temp, ignored);
    log::error("cannot write the queue directory",
               {{"file", file.string()}, {"step", step}, {"error", std::strerror(err)}});
    return false;
  }
  storage::io::Fd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() >= 0) ::fsync(dir_fd.get());
  return true;
}

void log_segment_damage(std::size_t shard, std::string_view part, const storage::SegmentDamage& d) {
  log::warn(d.cut ? "damaged log segment truncated during recovery"
                  : "damaged log bytes skipped during recovery",
            {{"shard", shard},
             {"log", part},
             {"reason", storage::to_string(d.reason)},
             {"segment", d.segment.string()},
             {"offset", d.offset},
             {"bytes", d.bytes}});
}

void log_gap(std::size_t shard, std::string_view part, const storage::SequenceGap& g) {
  // A gap in a log from an older botgate may be a segment it deleted once completed: not
  // a loss for sure, so not a warning.
  const auto level = g.assumed_deleted ? log::Level::info : log::Level::warn;
  if (!log::enabled(level)) return;
  log::write(level,
             g.assumed_deleted ? "log sequence gap taken for a segment deleted by an older botgate"
                               : "log records missing during recovery",
             {{"shard", shard},
              {"log", part},
              {"segment", g.segment.string()},
              {"next_segment", g.next.string()},
              {"first_seq", g.first},
              {"last_seq", g.first + g.count - 1},
              {"missing", g.count}});
}

void log_damage(std::size_t shard, std::string_view part, const storage::RecoveryReport& r) {
  if (r.records_skipped > 0) {
    log::warn("damaged log records skipped during recovery",
              {{"shard", shard},
               {"log", part},
               {"records", r.records_skipped},
               {"bytes", r.skipped_bytes},
               {"segment", r.skipped_segment.string()}});
  }
  for (const auto& d : r.damaged) log_segment_damage(shard, part, d);
  for (const auto& g : r.gaps) log_gap(shard, part, g);
  if (!r.truncated()) return;
  log::warn("log tail truncated during recovery", {{"shard", shard},
                                                   {"log", part},
                                                   {"reason", storage::to_string(r.reason)},
                                                   {"segment", r.segment.string()},
                                                   {"truncated_at", r.truncated_at},
                                                   {"truncated_bytes", r.truncated_bytes}});
}

fs::path shard_dir(const fs::path& root, std::size_t i) {
  return root / ("shard-" + std::to_string(i));
}

}  // namespace

std::optional<OpenedQueue> open_queue(const QueueConfig& q) {
  const fs::path root(q.dir);
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) {
    log::error("cannot create the queue directory", {{"dir", q.dir}, {"error", ec.message()}});
    return std::nullopt;
  }
  // Before the layout is read or written: two botgates starting together on a new directory
  // must not both record their own shard count.
  auto lock =
      std::make_unique<storage::io::Fd>(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (lock->get() < 0 || ::flock(lock->get(), LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    log::error(err == EWOULDBLOCK ? "the queue directory is in use by another botgate"
                                  : "cannot lock the queue directory",
               {{"dir", q.dir}, {"error", std::strerror(err)}});
    return std::nullopt;
  }
  bool recorded = false;
  if (!check_layout(root, q.shards, recorded)) return std::nullopt;

  storage::StoreOptions opts;
  opts.sync = q.fsync;
  opts.dedup_window = std::chrono::duration_cast<std::chrono::milliseconds>(q.dedup_window);
  opts.segment_bytes = q.segment_bytes;
  opts.memory_window = q.memory_window;

  // Shards recover in parallel: each reads and checks its own files.
  const auto n = static_cast<std::size_t>(q.shards);
  std::vector<OpenedShard> out(n);
  std::vector<std::string> errors(n);
  std::vector<std::int64_t> took_ms(n);
  {
    std::vector<std::jthread> workers;
    for (std::size_t i = 0; i < n; ++i) {
      workers.emplace_back([&, i] {
        const auto t0 = std::chrono::steady_clock::now();
        auto rec = std::make_shared<storage::Recovered>();
        try {
          out[i] = OpenedShard{storage::ShardStore::open(shard_dir(root, i), opts, *rec), rec};
        } catch (const std::exception& e) {
          errors[i] = e.what();
        }
        took_ms[i] = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::steady_clock::now() - t0)
                         .count();
      });
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (!errors[i].empty()) {
      log::error("cannot open the shard log",
                 {{"shard", i}, {"dir", shard_dir(root, i).string()}, {"error", errors[i]}});
      return std::nullopt;
    }
    const auto& rec = *out[i].recovered;
    log_damage(i, "events", rec.events_report);
    log_damage(i, "dead", rec.dead_report);
    if (rec.dedup_report.entries_corrupt > 0) {
      log::warn("dedup journal records skipped during recovery",
                {{"shard", i}, {"corrupt", rec.dedup_report.entries_corrupt}});
    }
    if (rec.undecodable > 0) {
      log::error("undecodable event records dropped during recovery",
                 {{"shard", i}, {"records", rec.undecodable}});
    }
    log::info("shard log recovered", {{"shard", i},
                                      {"pending", rec.pending},
                                      {"dead_letters", rec.dead_letters.size()},
                                      {"dedup_ids", rec.completed.size()},
                                      {"records", rec.events_report.records_scanned},
                                      {"ms", took_ms[i]}});
  }
  if (!recorded && !record_layout(root, q.shards)) return std::nullopt;
  return OpenedQueue{std::move(lock), std::move(out)};
}

}  // namespace botgate
