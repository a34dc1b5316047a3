// One pool's routing state, without actors: which targets may take a delivery now (healthy, not
// ejected, under their concurrency limit, a rate-limit token left), the pool's policy choosing
// among them, and the deliveries that wait because none can. A router actor owns one Balancer
// and does the messaging; everything here is pure and takes the time as an argument.
//
// Waiting: a delivery that finds no target waits in FIFO order and is handed out by drain(),
// which the owner calls whenever capacity may have come back (an answer, a probe, a tick).
// Sticky is the exception to "any target with room": a conversation waits for its own target's
// capacity (in that target's queue) instead of moving, and moves only when its target is
// unavailable (unhealthy or ejected).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "policies/outlier.hpp"
#include "policies/pick.hpp"
#include "policies/token_bucket.hpp"

namespace botgate {

struct TargetLimits {
  std::uint32_t max_in_flight = 0;  // 0: unlimited
  double rate_limit = 0;            // deliveries per second; 0: unlimited
  double burst = 1;                 // token bucket size
};

class Balancer {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;

  struct Assignment {
    std::uint64_t id;
    std::size_t target;
  };

  // `limits` per target; missing entries are unlimited.
  Balancer(PolicyKind kind, std::span<const std::string> names,
           std::span<const std::uint32_t> weights, std::span<const TargetLimits> limits,
           OutlierConfig outlier, TimePoint now)
      : picker_(kind, names, weights),
        outlier_(names.size(), outlier),
        targets_(names.size()),
        in_flight_(names.size(), 0),
        mask_(names.size(), false),
        waiting_for_(names.size()) {
    for (std::size_t i = 0; i < targets_.size() && i < limits.size(); ++i) {
      targets_[i].max_in_flight = limits[i].max_in_flight;
      targets_[i].bucket = TokenBucket(limits[i].rate_limit, limits[i].burst, now);
    }
  }

  // Places delivery `id` (conversation `key`; `avoid`: the target that just failed it). Returns
  // the target to send it to now, its slot and token taken; or nullopt: it waits until drain()
  // hands it out.
  std::optional<std::size_t> place(std::uint64_t id, std::string_view key,
                                   std::optional<std::size_t> avoid, TimePoint now) {
    // The key is copied only for a delivery that waits, never on the way straight through.
    const Choice c = waiting_.empty() ? choose(key, avoid, now) : Choice{Choice::wait};
    if (c.what == Choice::send) return take(c.target, now);
    queue_for(c, Waiter{id, std::string(key), avoid});
    return std::nullopt;
  }

  // Waiting deliveries that may go now, oldest first, each with its slot and token taken.
  std::vector<Assignment> drain(TimePoint now) {
    std::vector<Assignment> out;
    for (std::size_t t = 0; t < waiting_for_.size(); ++t) {
      auto& q = waiting_for_[t];
      while (!q.empty() && has_room(t, now)) {
        out.push_back(Assignment{q.front().id, take(t, now)});
        q.pop_front();
      }
    }
    while (!waiting_.empty()) {
      Waiter& w = waiting_.front();
      const Choice c = choose(w.key, w.avoid, now);
      if (c.what == Choice::wait) break;  // nothing can take the oldest: the rest wait too
      if (c.what == Choice::send) {
        out.push_back(Assignment{w.id, take(c.target, now)});
      } else {
        queue_for(c, std::move(w));
      }
      waiting_.pop_front();
    }
    return out;
  }

  // Takes the waiting deliveries whose id `given_up(id)` holds out of the queues (their owner
  // gave up on them), in one pass; returns how many.
  template <typename Pred>
  std::size_t withdraw_if(Pred given_up) {
    const auto match = [&](const Waiter& w) { return given_up(w.id); };
    std::size_t n = std::erase_if(waiting_, match);
    for (auto& q : waiting_for_) n += std::erase_if(q, match);
    return n;
  }

  // A delivery sent to `target` is over (answered, timed out or moved): its slot is free.
  void release(std::size_t target) noexcept {
    if (in_flight_[target] > 0) --in_flight_[target];
  }

  // A delivery to `target` failed in a way that says the target is sick (5xx, timeout,
  // connection error). Returns true when this failure ejected it. The pool's last available
  // target is never ejected (counting targets down by probe too): a struggling target still
  // takes deliveries, where an empty pool would take none.
  bool on_failure(std::size_t target, TimePoint now) {
    if (!other_available(target, now)) return false;
    if (!outlier_.on_failure(target, now)) return false;
    targets_[target].ejected_seen = true;
    evacuate(target);
    return true;
  }

  void on_success(std::size_t target) noexcept { outlier_.on_success(target); }

  // The probe's verdict. Returns true when it changed the target's health.
  bool set_healthy(std::size_t target, bool healthy) {
    if (targets_[target].healthy == healthy) return false;
    targets_[target].healthy = healthy;
    if (!healthy) evacuate(target);
    return true;
  }

  // Targets whose ejection has ended since the last call.
  std::vector<std::size_t> returned(TimePoint now) {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < targets_.size(); ++i) {
      if (targets_[i].ejected_seen && !outlier_.ejected(i, now)) {
        targets_[i].ejected_seen = false;
        out.push_back(i);
      }
    }
    return out;
  }

  // Healthy and not ejected: may be chosen, capacity permitting.
  bool available(std::size_t i, TimePoint now) const noexcept {
    return targets_[i].healthy && !outlier_.ejected(i, now);
  }

  // When something waiting may become placeable by time alone: the next rate-limit token of an
  // available target, or the end of an ejection. nullopt when nothing waits or only a message
  // (an answer, a probe) can free it.
  std::optional<TimePoint> next_wake(TimePoint now) {
    if (waiting() == 0) return std::nullopt;
    std::optional<TimePoint> wake = outlier_.next_return(now);
    for (std::size_t i = 0; i < targets_.size(); ++i) {
      auto& t = targets_[i];
      if (!available(i, now) || t.bucket.available(now)) continue;
      const TimePoint at = t.bucket.next_available(now);
      if (!wake || at < *wake) wake = at;
    }
    return wake;
  }

  std::size_t waiting() const noexcept {
    std::size_t n = waiting_.size();
    for (const auto& q : waiting_for_) n += q.size();
    return n;
  }

  std::size_t size() const noexcept { return targets_.size(); }
  PolicyKind kind() const noexcept { return picker_.kind(); }
  bool healthy(std::size_t i) const noexcept { return targets_[i].healthy; }
  std::uint32_t in_flight(std::size_t i) const noexcept { return in_flight_[i]; }
  std::uint32_t max_in_flight(std::size_t i) const noexcept { return targets_[i].max_in_flight; }
  const OutlierDetector& outlier() const noexcept { return outlier_; }

 private:
  struct Waiter {
    std::uint64_t id;
    std::string key;
    std::optional<std::size_t> avoid;
  };

  // What a delivery does now: go to `target`, wait in `target`'s queue (sticky: its target is
  // available but full), or wait for any target.
  struct Choice {
    enum What { send, wait_for_target, wait } what;
    std::size_t target = 0;
  };

  struct Target {
    bool healthy = true;
    bool ejected_seen = false;  // ejected, and returned() has not reported the end yet
    std::uint32_t max_in_flight = 0;
    TokenBucket bucket;
  };

  bool other_available(std::size_t target, TimePoint now) const noexcept {
    for (std::size_t i = 0; i < targets_.size(); ++i) {
      if (i != target && available(i, now)) return true;
    }
    return false;
  }

  bool has_room(std::size_t i, TimePoint now) noexcept {
    auto& t = targets_[i];
    if (t.max_in_flight != 0 && in_flight_[i] >= t.max_in_flight) return false;
    return t.bucket.available(now);
  }

  // Takes a slot and a token of target i; returns i.
  std::size_t take(std::size_t i, TimePoint now) noexcept {
    ++in_flight_[i];
    targets_[i].bucket.try_take(now);
    return i;
  }

  Choice choose(std::string_view key, std::optional<std::size_t> avoid, TimePoint now) {
    const bool sticky = picker_.kind() == PolicyKind::sticky;
    for (std::size_t i = 0; i < mask_.size(); ++i) {
      mask_[i] = available(i, now) && (sticky || has_room(i, now));
    }
    const auto t = picker_.pick(PickRequest{mask_, avoid, key, in_flight_});
    if (!t) return Choice{Choice::wait};
    if (sticky && (!waiting_for_[*t].empty() || !has_room(*t, now))) {
      return Choice{Choice::wait_for_target, *t};
    }
    return Choice{Choice::send, *t};
  }

  void queue_for(const Choice& c, Waiter&& w) {
    if (c.what == Choice::wait_for_target) {
      waiting_for_[c.target].push_back(std::move(w));
    } else {
      waiting_.push_back(std::move(w));
    }
  }

  // Target i is unavailable: its sticky waiters choose again, ahead of newer waiters.
  void evacuate(std::size_t i) {
    auto& q = waiting_for_[i];
    for (auto it = q.rbegin(); it != q.rend(); ++it) waiting_.push_front(std::move(*it));
    q.clear();
  }

  Picker picker_;
  OutlierDetector outlier_;
  std::vector<Target> targets_;
  std::vector<std::uint32_t> in_flight_;
  TargetMask mask_;  // scratch, reused by every pick
  std::deque<Waiter> waiting_;
  std::vector<std::deque<Waiter>> waiting_for_;  // sticky: waiting for target i's capacity
};

}  // namespace botgate
