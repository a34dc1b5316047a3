// Process metrics, declared in one place so what is counted can be seen at a glance.
// Every series is created at start-up; the hot path only does relaxed atomic adds,
// never a lookup and never a lock.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/units.hpp"

namespace botgate {

class Counter {
 public:
  void inc(std::uint64_t n = 1) noexcept { v_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

class Gauge {
 public:
  void set(std::int64_t v) noexcept { v_.store(v, std::memory_order_relaxed); }
  void add(std::int64_t d) noexcept { v_.fetch_add(d, std::memory_order_relaxed); }
  std::int64_t value() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> v_{0};
};

// Latency histogram with fixed buckets from 50us to 60s.
class Histogram {
 public:
  static constexpr std::array<double, 18> kBounds = {
      0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
      0.05,    0.1,    0.25,    0.5,    1,     2.5,    5,     10,   60};
  void observe(Duration d) noexcept;
  // The sum of the buckets: no separate counter, which observations on other threads could
  // move between reading it and the buckets (a scrape then had _count above le="+Inf").
  std::uint64_t count() const noexcept;
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::array<Counter, kBounds.size() + 1> buckets_{};
  Counter sum_ns_;
};

enum class HttpRoute {
  healthz,
  readyz,
  metrics,
  events,
  wechat,
  wecom,
  messages,
  admin,
  unknown,
  count_
};
enum class RejectReason {
  bad_signature,
  stale_timestamp,
  malformed,
  missing_field,
  unknown_source,
  wrong_method,
  too_large,
  shards_full,
  storage_error,
  disk_full,
  count_
};
enum class DeliveryOutcome { success, server_error, timeout, connect_error, rejected, count_ };

const char* to_string(HttpRoute r);
const char* to_string(RejectReason r);
const char* to_string(DeliveryOutcome o);

struct TargetMetrics {
  explicit TargetMetrics(std::string n) : name(std::move(n)) { healthy.set(1); }
  std::string name;
  std::array<Counter, static_cast<std::size_t>(DeliveryOutcome::count_)> deliveries{};
  Gauge in_flight;
  // Health: the probe's verdict (1 healthy), and how many pools eject the target right now.
  Gauge healthy;
  Gauge ejected;
  Counter ejections;
  Counter probes_ok;
  Counter probes_failed;
  Counter became_healthy;
  Counter became_unhealthy;
  // Account targets (`account` set by the wiring; only theirs are exported): access-token
  // fetches (ok / failed) and platform error codes answered.
  bool account = false;
  Counter token_fetches_ok;
  Counter token_fetches_failed;
  Counter platform_errors;
  void count(DeliveryOutcome o) noexcept { deliveries[static_cast<std::size_t>(o)].inc(); }
};

struct PoolMetrics {
  explicit PoolMetrics(std::string n) : name(std::move(n)) {}
  std::string name;
  Gauge waiting;     // deliveries waiting in the router for an eligible target
  Counter reroutes;  // in-flight deliveries moved off a target that went down
};

class Metrics {
 public:
  Metrics(std::size_t shards, const std::vector<std::string>& targets,
          const std::vector<std::string>& pools = {});

  void count_request(HttpRoute route, unsigned status) noexcept;
  void count_rejected(RejectReason r) noexcept { rejected_[static_cast<std::size_t>(r)].inc(); }
  Counter& events_accepted() noexcept { return accepted_; }
  Counter& events_delivered() noexcept { return delivered_; }
  Counter& events_dead_lettered() noexcept { return dead_lettered_; }
  Counter& delivery_retries() noexcept { return retries_; }
  Counter& events_duplicate() noexcept { return duplicate_; }
  Counter& events_recovered() noexcept { return recovered_; }
  Counter& dead_letters_replayed() noexcept { return replayed_; }
  Gauge& dead_letters() noexcept { return dead_letters_; }
  // The durable log: one commit makes a batch of appends durable under the fsync mode.
  Counter& log_commits() noexcept { return commits_; }
  Counter& log_event_commits() noexcept { return event_commits_; }  // commits with appends
  Counter& log_syncs() noexcept { return syncs_; }
  Counter& log_committed_events() noexcept { return committed_events_; }
  Counter& log_errors() noexcept { return log_errors_; }
  // Pending records found damaged on disk when read back (each costs that record only).
  Counter& log_records_damaged() noexcept { return records_damaged_; }
  // Shards refusing new events because the queue's disk is below [queue] min_free.
  Gauge& shards_disk_full() noexcept { return shards_disk_full_; }
  Histogram& log_commit_latency() noexcept { return commit_latency_; }
  Gauge& queue_depth(std::size_t shard) noexcept { return depth_[shard]; }
  TargetMetrics& target(std::size_t index) noexcept { return *targets_[index]; }
  // Returns nullptr for an unknown name; used at wiring time only.
  TargetMetrics* find_target(const std::string& name) noexcept;
  PoolMetrics* find_pool(const std::string& name) noexcept;
  Histogram& ingest_to_ack() noexcept { return ingest_to_ack_; }
  // WeChat / WeCom callbacks and replies.
  Counter& passive_replies() noexcept { return passive_replies_; }
  Counter& late_acks() noexcept { return late_acks_; }
  Counter& connections_refused() noexcept { return connections_refused_; }
  Counter& events_unrouted() noexcept { return unrouted_; }
  Counter& replies_queued() noexcept { return replies_queued_; }
  Counter& replies_dropped() noexcept { return replies_dropped_; }
  Histogram& end_to_end() noexcept { return end_to_end_; }

  std::uint64_t rejected(RejectReason r) const noexcept {
    return rejected_[static_cast<std::size_t>(r)].value();
  }

  // Prometheus text exposition format 0.0.4.
  std::string render() const;

 private:
  // Every status botgate answers, each its own series; anything else counts as "other" (0).
  // 501: a transfer coding other than chunked. (100 Continue is interim, never counted.)
  static constexpr std::array<unsigned, 13> kStatuses = {200, 202, 400, 401, 404, 405, 408,
                                                         409, 413, 500, 501, 503, 0};
  static std::size_t status_index(unsigned status) noexcept;

  std::array<std::array<Counter, kStatuses.size()>, static_cast<std::size_t>(HttpRoute::count_)>
      requests_{};
  std::array<Counter, static_cast<std::size_t>(RejectReason::count_)> rejected_{};
  Counter accepted_;
  Counter delivered_;
  Counter dead_lettered_;
  Counter retries_;
  Counter duplicate_;
  Counter recovered_;
  Counter replayed_;
  Gauge dead_letters_;
  Counter commits_;
  Counter event_commits_;
  Counter syncs_;
  Counter committed_events_;
  Counter log_errors_;
  Counter records_damaged_;
  Gauge shards_disk_full_;
  Histogram commit_latency_;
  std::unique_ptr<Gauge[]> depth_;
  std::size_t shards_;
  std::vector<std::unique_ptr<TargetMetrics>> targets_;
  std::vector<std::unique_ptr<PoolMetrics>> pools_;
  Histogram ingest_to_ack_;
  Histogram end_to_end_;
  Counter passive_replies_;
  Counter late_acks_;
  Counter connections_refused_;
  Counter unrouted_;
  Counter replies_queued_;
  Counter replies_dropped_;
};

}  // namespace botgate
