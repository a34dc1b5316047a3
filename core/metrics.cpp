#include "core/metrics.hpp"

#include <fmt/format.h>

namespace botgate {

void Histogram::observe(Duration d) noexcept {
  const double s = std::chrono::duration<double>(d).count();
  std::size_t i = 0;
  while (i < kBounds.size() && s > kBounds[i]) ++i;
  buckets_[i].inc();
  sum_ns_.inc(static_cast<std::uint64_t>(d.count() > 0 ? d.count() : 0));
}

std::uint64_t Histogram::count() const noexcept {
  std::uint64_t n = 0;
  for (const auto& b : buckets_) n += b.value();
  return n;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  const std::string sep = labels.empty() ? "" : ",";
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < kBounds.size(); ++i) {
    cumulative += buckets_[i].value();
    out +=
        fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, kBounds[i], cumulative);
  }
  cumulative += buckets_[kBounds.size()].value();
  out += fmt::format("{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep, cumulative);
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  out += fmt::format("{}_sum{} {}\n", name, braces, static_cast<double>(sum_ns_.value()) / 1e9);
  out += fmt::format("{}_count{} {}\n", name, braces, cumulative);  // the +Inf bucket, as read
}

const char* to_string(HttpRoute r) {
  switch (r) {
    case HttpRoute::healthz:
      return "healthz";
    case HttpRoute::readyz:
      return "readyz";
    case HttpRoute::metrics:
      return "metrics";
    case HttpRoute::events:
      return "events";
    case HttpRoute::wechat:
      return "wechat";
    case HttpRoute::wecom:
      return "wecom";
    case HttpRoute::messages:
      return "messages";
    case HttpRoute::admin:
      return "admin";
    case HttpRoute::unknown:
      return "unknown";
    case HttpRoute::count_:
      break;
  }
  return "unknown";
}

const char* to_string(RejectReason r) {
  switch (r) {
    case RejectReason::bad_signature:
      return "bad_signature";
    case RejectReason::stale_timestamp:
      return "stale_timestamp";
    case RejectReason::malformed:
      return "malformed";
    case RejectReason::missing_field:
      return "missing_field";
    case RejectReason::unknown_source:
      return "unknown_source";
    case RejectReason::wrong_method:
      return "wrong_method";
    case RejectReason::too_large:
      return "too_large";
    case RejectReason::shards_full:
      return "shards_full";
    case RejectReason::storage_error:
      return "storage_error";
    case RejectReason::disk_full:
      return "disk_full";
    case RejectReason::count_:
      break;
  }
  return "unknown";
}

const char* to_string(DeliveryOutcome o) {
  switch (o) {
    case DeliveryOutcome::success:
      return "success";
    case DeliveryOutcome::server_error:
      return "server_error";
    case DeliveryOutcome::timeout:
      return "timeout";
    case DeliveryOutcome::connect_error:
      return "connect_error";
    case DeliveryOutcome::rejected:
      return "rejected";
    case DeliveryOutcome::count_:
      break;
  }
  return "unknown";
}

Metrics::Metrics(std::size_t shards, const std::vector<std::string>& targets,
                 const std::vector<std::string>& pools)
    : depth_(new Gauge[shards]), shards_(shards) {
  for (const auto& t : targets) targets_.push_back(std::make_unique<TargetMetrics>(t));
  for (const auto& p : pools) pools_.push_back(std::make_unique<PoolMetrics>(p));
}

std::size_t Metrics::status_index(unsigned status) noexcept {
  for (std::size_t i = 0; i + 1 < kStatuses.size(); ++i) {
    if (kStatuses[i] == status) return i;
  }
  return kStatuses.size() - 1;
}

void Metrics::count_request(HttpRoute route, unsigned status) noexcept {
  requests_[static_cast<std::size_t>(route)][status_index(status)].inc();
}

TargetMetrics* Metrics::find_target(const std::string& name) noexcept {
  for (auto& t : targets_) {
    if (t->name == name) return t.get();
  }
  return nullptr;
}

PoolMetrics* Metrics::find_pool(const std::string& name) noexcept {
  for (auto& p : pools_) {
    if (p->name == name) return p.get();
  }
  return nullptr;
}

namespace {

// One series per target (or pool): HELP and TYPE, then `name{label="x"} value` lines.
template <typename Items, typename Value>
void labelled(std::string& out, std::string_view name, std::string_view type, std::string_view help,
              std::string_view label, const Items& items, Value value) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  for (const auto& item : items) {
    out += fmt::format("{}{{{}=\"{}\"}} {}\n", name, label, item->name, value(*item));
  }
}

// One unlabelled series with its HELP and TYPE lines.
template <typename T>
void scalar(std::string& out, std::string_view name, std::string_view type, std::string_view help,
            T value) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
}

}  // namespace

std::string Metrics::render() const {
  std::string out;
  out.reserve(8192);
  out += "# HELP botgate_http_requests_total HTTP requests by route and status.\n";
  out += "# TYPE botgate_http_requests_total counter\n";
  for (std::size_t r = 0; r < requests_.size(); ++r) {
    for (std::size_t s = 0; s < kStatuses.size(); ++s) {
      auto v = requests_[r][s].value();
      if (v == 0) continue;
      std::string status = kStatuses[s] == 0 ? "other" : std::to_string(kStatuses[s]);
      out += fmt::format("botgate_http_requests_total{{route=\"{}\",status=\"{}\"}} {}\n",
                         to_string(static_cast<HttpRoute>(r)), status, v);
    }
  }
  scalar(out, "botgate_events_accepted_total", "counter", "Events acknowledged to the platform.",
         accepted_.value());
  out += "# HELP botgate_events_rejected_total Events refused, by reason.\n";
  out += "# TYPE botgate_events_rejected_total counter\n";
  for (std::size_t r = 0; r < rejected_.size(); ++r) {
    out += fmt::format("botgate_events_rejected_total{{reason=\"{}\"}} {}\n",
                       to_string(static_cast<RejectReason>(r)), rejected_[r].value());
  }
  scalar(out, "botgate_events_delivered_total", "counter", "Events a backend accepted.",
         delivered_.value());
  scalar(out, "botgate_events_dead_lettered_total", "counter", "Events given up on.",
         dead_lettered_.value());
  scalar(out, "botgate_delivery_retries_total", "counter",
         "Deliveries scheduled again after a failure.", retries_.value());
  scalar(out, "botgate_events_duplicate_total", "counter",
         "Events acknowledged again but not queued again (id seen within the dedup window).",
         duplicate_.value());
  scalar(out, "botgate_events_recovered_total", "counter",
         "Events found not completed in the log at start-up and resumed.", recovered_.value());
  scalar(out, "botgate_dead_letters", "gauge", "Dead letters kept on disk.", dead_letters_.value());
  scalar(out, "botgate_dead_letters_replayed_total", "counter",
         "Dead letters queued again through the admin API.", replayed_.value());
  scalar(out, "botgate_log_commits_total", "counter",
         "Group commits: batches of log appends made durable together.", commits_.value());
  scalar(out, "botgate_log_event_commits_total", "counter",
         "Commits that carried at least one event (the rest carry completions only).",
         event_commits_.value());
  scalar(out, "botgate_log_syncs_total", "counter",
         "Syncs of the shard event logs: by commits, and by the housekeeping tick for what "
         "commits left unsynced.",
         syncs_.value());
  scalar(out, "botgate_log_committed_events_total", "counter",
         "Events covered by commits (divide by event commits for events per commit).",
         committed_events_.value());
  scalar(out, "botgate_log_errors_total", "counter",
         "I/O errors of the shard logs (each makes a shard refuse events).", log_errors_.value());
  scalar(out, "botgate_log_records_damaged_total", "counter",
         "Pending log records found damaged on disk when read back: each one event or dead letter "
         "lost.",
         records_damaged_.value());
  scalar(out, "botgate_queue_disk_full", "gauge",
         "Shards refusing new events while the queue's disk has less than [queue] min_free free.",
         shards_disk_full_.value());
  out += "# HELP botgate_log_commit_seconds Time to write (and sync) one commit.\n";
  out += "# TYPE botgate_log_commit_seconds histogram\n";
  commit_latency_.render(out, "botgate_log_commit_seconds", "");
  out += "# HELP botgate_queue_depth Events held by a shard, queued or in flight.\n";
  out += "# TYPE botgate_queue_depth gauge\n";
  for (std::size_t i = 0; i < shards_; ++i) {
    out += fmt::format("botgate_queue_depth{{shard=\"{}\"}} {}\n", i, depth_[i].value());
  }
  out += "# HELP botgate_deliveries_total Delivery attempts by target and outcome.\n";
  out += "# TYPE botgate_deliveries_total counter\n";
  for (const auto& t : targets_) {
    for (std::size_t o = 0; o < t->deliveries.size(); ++o) {
      out += fmt::format("botgate_deliveries_total{{target=\"{}\",outcome=\"{}\"}} {}\n", t->name,
                         to_string(static_cast<DeliveryOutcome>(o)), t->deliveries[o].value());
    }
  }
  labelled(out, "botgate_target_in_flight", "gauge", "Deliveries currently in flight per target.",
           "target", targets_, [](const TargetMetrics& t) { return t.in_flight.value(); });
  labelled(out, "botgate_target_healthy", "gauge",
           "1 while the target's health probe says healthy (targets without a probe stay 1).",
           "target", targets_, [](const TargetMetrics& t) { return t.healthy.value(); });
  labelled(out, "botgate_target_ejected", "gauge",
           "Pools that currently eject the target for consecutive failed deliveries.", "target",
           targets_, [](const TargetMetrics& t) { return t.ejected.value(); });
  labelled(out, "botgate_target_ejections_total", "counter",
           "Ejections of the target by passive outlier detection.", "target", targets_,
           [](const TargetMetrics& t) { return t.ejections.value(); });
  out += "# HELP botgate_probes_total Health probes by target and result.\n";
  out += "# TYPE botgate_probes_total counter\n";
  for (const auto& t : targets_) {
    out += fmt::format("botgate_probes_total{{target=\"{}\",result=\"ok\"}} {}\n", t->name,
                       t->probes_ok.value());
    out += fmt::format("botgate_probes_total{{target=\"{}\",result=\"fail\"}} {}\n", t->name,
                       t->probes_failed.value());
  }
  out += "# HELP botgate_target_health_transitions_total Probe-driven health changes.\n";
  out += "# TYPE botgate_target_health_transitions_total counter\n";
  for (const auto& t : targets_) {
    out +=
        fmt::format("botgate_target_health_transitions_total{{target=\"{}\",to=\"healthy\"}} {}\n",
                    t->name, t->became_healthy.value());
    out += fmt::format(
        "botgate_target_health_transitions_total{{target=\"{}\",to=\"unhealthy\"}} {}\n", t->name,
        t->became_unhealthy.value());
  }
  out +=
      "# HELP botgate_token_fetches_total Fetches of the access token each account target sends "
      "with (a token shared by targets counts under each), by result.\n";
  out += "# TYPE botgate_token_fetches_total counter\n";
  // Only account targets fetch tokens or get platform errcodes: an http target's would be 0.
  std::vector<const TargetMetrics*> accounts;
  for (const auto& t : targets_) {
    if (t->account) accounts.push_back(t.get());
  }
  for (const auto* t : accounts) {
    out += fmt::format("botgate_token_fetches_total{{target=\"{}\",result=\"ok\"}} {}\n", t->name,
                       t->token_fetches_ok.value());
    out += fmt::format("botgate_token_fetches_total{{target=\"{}\",result=\"fail\"}} {}\n", t->name,
                       t->token_fetches_failed.value());
  }
  labelled(out, "botgate_platform_errors_total", "counter",
           "Sends an account target's platform answered with a non-zero errcode.", "target",
           accounts, [](const TargetMetrics& t) { return t.platform_errors.value(); });
  scalar(out, "botgate_passive_replies_total", "counter",
         "WeChat/WeCom callbacks answered with a passive reply (route rule or heartbeat).",
         passive_replies_.value());
  scalar(out, "botgate_connections_refused_total", "counter",
         "Connections closed as soon as accepted because [server] max_connections were open.",
         connections_refused_.value());
  scalar(out, "botgate_late_acks_total", "counter",
         "Callbacks answered \"success\" at the ack deadline before storage confirmed them.",
         late_acks_.value());
  scalar(out, "botgate_events_unrouted_total", "counter",
         "Callbacks accepted that no rule or route forwards (answered, not stored).",
         unrouted_.value());
  scalar(out, "botgate_replies_queued_total", "counter",
         "Backend replies queued for sending through an account pool.", replies_queued_.value());
  scalar(out, "botgate_replies_dropped_total", "counter",
         "Backend replies dropped: malformed, or the source has no account pool.",
         replies_dropped_.value());
  labelled(out, "botgate_router_waiting", "gauge",
           "Deliveries waiting in a pool's router for an eligible target.", "pool", pools_,
           [](const PoolMetrics& p) { return p.waiting.value(); });
  labelled(out, "botgate_router_reroutes_total", "counter",
           "In-flight deliveries moved off a target that went down.", "pool", pools_,
           [](const PoolMetrics& p) { return p.reroutes.value(); });
  out += "# HELP botgate_ingest_to_ack_seconds From request read to ack written.\n";
  out += "# TYPE botgate_ingest_to_ack_seconds histogram\n";
  ingest_to_ack_.render(out, "botgate_ingest_to_ack_seconds", "");
  out += "# HELP botgate_end_to_end_seconds From request read to backend success.\n";
  out += "# TYPE botgate_end_to_end_seconds histogram\n";
  end_to_end_.render(out, "botgate_end_to_end_seconds", "");
  return out;
}

}  // namespace botgate
