// router_bench: routing decisions per second through the real router actor.
//
// One router (actors/router_actor.hpp) over --targets stub targets that answer a successful
// Outcome at once, driven by --drivers driver actors that each keep --window deliveries
// outstanding. A driver speaks to the router as a shard does: Deliveries in batches (what it
// has at hand, at most --batch per message), answered by (outcome, Answers). Every answered
// delivery is one routing decision; on its way it passes driver -> router -> target -> router
// -> driver, in batches. Each policy runs for --seconds after a warm-up; the figure is decisions
// per wall second, and per CPU second of the whole process (less sensitive to other jobs on the
// machine).
//
// For reference the pure Picker (policies/pick.hpp) and the router's whole routing state, the
// Balancer (policies/balancer.hpp), are timed alone, in a loop: the share of a decision that is
// routing logic rather than messaging. See bench/README.md.
#include <fmt/format.h>
#include <sys/resource.h>

#include <atomic>
#include <caf/all.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "actors/messages.hpp"
#include "actors/router_actor.hpp"
#include "bench/common.hpp"
#include "policies/balancer.hpp"
#include "policies/pick.hpp"

namespace {

using namespace std::chrono_literals;
using bench::parse_num;
using botgate::deliver_atom;
using botgate::EventPtr;
using botgate::Outcome;
using botgate::PolicyKind;
using botgate::router_actor;
using botgate::target_actor;

struct Options {
  double seconds = 2.0;  // measured time per policy
  double warmup = 0.3;   // before the measurement, per policy
  unsigned targets = 3;
  unsigned routers = 1;  // independent pools
  unsigned drivers = 0;  // 0: one per router
  unsigned window = 64;  // requests outstanding per driver
  unsigned threads = 1;  // CAF scheduler threads (botgate's bench config: [actors] threads = 1)
  unsigned throughput = 100;
  unsigned conversations = 1000;
  unsigned key_len = 0;        // pad conversation keys to this length (0: "c<n>")
  unsigned max_in_flight = 0;  // per target; 0: unlimited
  unsigned batch = 0;          // deliveries per message to the router; 0: all at hand
  std::string scheduler = "stealing";
  std::vector<PolicyKind> policies;  // empty: all five
  bool json = false;
  bool no_picker = false;
  bool no_actors = false;
  // router: through the router actor. request: drivers ask the stub targets themselves (one
  // CAF request/response, no router). send: plain messages both ways, no request at all.
  std::string mode = "router";
};

void usage(std::FILE* out) {
  std::fputs(
      "usage: router_bench [options]\n"
      "  --policy NAME        round-robin | weighted | least-inflight | sticky | failover;\n"
      "                       repeat for several (default: all five)\n"
      "  --seconds SEC        measured time per policy (default 2)\n"
      "  --warmup SEC         warm-up per policy, not counted (default 0.3)\n"
      "  --targets N          stub targets in the pool (default 3)\n"
      "  --routers N          independent pools, each a router over its own --targets stub\n"
      "                       targets (default 1)\n"
      "  --drivers N          driver actors, spread over the routers (default: one per router)\n"
      "  --window N           deliveries each driver keeps outstanding (default 64)\n"
      "  --threads N          CAF scheduler threads (default 1)\n"
      "  --max-throughput N   CAF scheduler.max-throughput (default 100, as botgate)\n"
      "  --scheduler S        stealing | sharing (default stealing)\n"
      "  --conversations N    distinct conversation keys (sticky hashes them; default 1000)\n"
      "  --batch N            at most N deliveries per message to the router (default 0: all the\n"
      "                       driver has at hand, as a shard sends what one burst produced;\n"
      "                       1: one event per message)\n"
      "  --max-in-flight N    per-target concurrency limit in the router (default 0: none);\n"
      "                       below window/targets, the excess waits in the router\n"
      "  --key-len N          pad each conversation key to N characters (default: c<n>, which\n"
      "                       fits std::string's inline buffer; real chat ids are longer)\n"
      "  --no-picker          skip the Picker-alone and Balancer-alone measurements\n"
      "  --no-actors          only the Picker-alone and Balancer-alone measurements\n"
      "  --mode M             router (default): drivers -> router -> stub targets;\n"
      "                       request: one CAF request/response per event with echo actors,\n"
      "                       no router, no batching (CAF's own cost, for comparison);\n"
      "                       send: one plain message each way per event, likewise\n"
      "  --json               one JSON line per measurement\n",
      out);
}

std::optional<Options> parse_args(int argc, char** argv) {
  Options o;
  const bool parsed = bench::parse_flags(
      "router_bench", argc, argv, usage,
      [&](std::string_view a) {
        if (a != "--json" && a != "--no-picker" && a != "--no-actors") return false;
        (a == "--json" ? o.json : a == "--no-picker" ? o.no_picker : o.no_actors) = true;
        return true;
      },
      [&](std::string_view a, std::string_view val) {
        bool ok = true;
        if (a == "--policy") {
          auto kind = botgate::parse_policy_kind(val);
          ok = kind.has_value();
          if (ok) o.policies.push_back(*kind);
        } else if (a == "--seconds") {
          ok = bench::parse_decimal(val, o.seconds, 1e6) && o.seconds > 0;
        } else if (a == "--warmup") {
          ok = bench::parse_decimal(val, o.warmup, 1e6);
        } else if (a == "--targets") {
          ok = parse_num(val, o.targets) && o.targets > 0 && o.targets <= 10000;
        } else if (a == "--routers") {
          ok = parse_num(val, o.routers) && o.routers > 0 && o.routers <= 64;
        } else if (a == "--drivers") {
          ok = parse_num(val, o.drivers) && o.drivers > 0 && o.drivers <= 64;
        } else if (a == "--window") {
          ok = parse_num(val, o.window) && o.window > 0 && o.window <= 1000000;
        } else if (a == "--threads") {
          ok = parse_num(val, o.threads) && o.threads > 0 && o.threads <= 64;
        } else if (a == "--max-throughput") {
          ok = parse_num(val, o.throughput) && o.throughput > 0;
        } else if (a == "--scheduler") {
          o.scheduler = val;
          ok = val == "stealing" || val == "sharing";
        } else if (a == "--mode") {
          o.mode = val;
          ok = val == "router" || val == "request" || val == "send";
        } else if (a == "--conversations") {
          ok = parse_num(val, o.conversations) && o.conversations > 0;
        } else if (a == "--batch") {
          ok = parse_num(val, o.batch);
        } else if (a == "--max-in-flight") {
          ok = parse_num(val, o.max_in_flight);
        } else if (a == "--key-len") {
          ok = parse_num(val, o.key_len) && o.key_len <= 4096;
        } else {
          return bench::Flag::unknown;
        }
        return ok ? bench::Flag::ok : bench::Flag::bad;
      });
  if (!parsed) return std::nullopt;
  if (o.drivers == 0) o.drivers = o.routers;
  if (o.policies.empty()) {
    for (const auto& [name, kind] : botgate::kPolicyNames) o.policies.push_back(kind);
  }
  return o;
}

// User + system CPU time of the whole process, in seconds.
double process_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const auto tv = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}

// Events shared by every driver, one per conversation (sticky routes by conversation).
std::vector<EventPtr> make_events(unsigned conversations, unsigned key_len) {
  std::vector<EventPtr> evs;
  evs.reserve(conversations);
  for (unsigned i = 0; i < conversations; ++i) {
    auto ev = std::make_shared<botgate::Event>();
    ev->source = "bench";
    ev->id = fmt::format("e{}", i);
    ev->conversation = fmt::format("c{}", i);
    if (ev->conversation.size() < key_len)
      ev->conversation.insert(1, key_len - ev->conversation.size(), '0');
    ev->raw = R"({"text":"hello"})";
    ev->received_at = botgate::Clock::now();
    evs.push_back(std::move(ev));
  }
  return evs;
}

std::vector<std::string> target_names(unsigned n) {
  std::vector<std::string> names;
  for (unsigned i = 0; i < n; ++i) names.push_back(fmt::format("t{}", i));
  return names;
}

// ---------------------------------------------------------------- actors

// A target that succeeds at once: the router's cost without any I/O. Like the HTTP target it
// answers the sender of a batch of Sends with (outcome, Results), here at once and in one message.
target_actor::behavior_type stub_target(target_actor::pointer self, std::string name) {
  return {
      [self, name](deliver_atom, botgate::Sends& sends) {
        botgate::Results results;
        results.reserve(sends.size());
        for (const auto& s : sends) {
          botgate::Result r;
          r.ticket = s.ticket;
          r.leg = s.leg;
          r.outcome.target = name;
          r.outcome.status = 200;
          results.push_back(std::move(r));
        }
        caf::anon_send(caf::actor_cast<caf::actor>(self->current_sender()),
                       botgate::outcome_atom::value, std::move(results));
      },
      [](botgate::done_atom, std::uint64_t, botgate::http::ClientResponse&) {},
      [](botgate::flush_atom) {},
  };
}

// --mode request: answers a CAF request with an Outcome (CAF's request/response, no router).
caf::behavior echo_request(std::string name) {
  return {
      [name](deliver_atom, const EventPtr&, std::uint32_t) {
        Outcome out;
        out.target = name;
        out.status = 200;
        return out;
      },
  };
}

// --mode send: answers every event with a plain message to its sender.
caf::behavior echo_send(caf::event_based_actor* self, std::string name) {
  return {
      [self, name](deliver_atom, const EventPtr&, std::uint32_t) {
        Outcome out;
        out.target = name;
        out.status = 200;
        caf::anon_send(caf::actor_cast<caf::actor>(self->current_sender()),
                       botgate::done_atom::value, std::move(out));
      },
  };
}

// --mode: through the router, or CAF alone for comparison (see usage()).
enum class Mode { router, request, send };

// What the drivers and main() share. Counters are per driver, on their own cache lines.
struct alignas(64) DriverCounter {
  std::atomic<std::uint64_t> answered{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<bool> done{false};
};

struct Shared {
  std::atomic<bool> stop{false};
  std::vector<DriverCounter> counters;
  const std::vector<EventPtr>* events = nullptr;
  Mode mode = Mode::router;
  unsigned batch = 0;              // deliveries per message to the router; 0: all at hand
  std::vector<caf::actor> echoes;  // --mode request / send
  explicit Shared(std::size_t drivers) : counters(drivers) {}
};

struct DriverState {
  static inline const char* name = "router-bench-driver";
  router_actor router;
  Shared* shared = nullptr;
  std::size_t slot = 0;
  std::uint64_t outstanding = 0;
  std::size_t next_event = 0;
};

using DriverSelf = caf::stateful_actor<DriverState>*;

const EventPtr& next_event(DriverState& st) {
  const auto& evs = *st.shared->events;
  const EventPtr& ev = evs[st.next_event];
  st.next_event = st.next_event + 1 == evs.size() ? 0 : st.next_event + 1;
  return ev;
}

void on_answers(DriverSelf self, std::uint64_t ok, std::uint64_t failed);

// Sends n more events the way --mode says. To the router it sends like a shard: what one burst
// produced, as Deliveries (at most --batch per message), and gets (outcome, Answers) back.
void issue(DriverSelf self, std::uint64_t n) {
  auto& st = self->state;
  st.outstanding += n;
  switch (st.shared->mode) {
    case Mode::router: {
      const std::uint64_t per = st.shared->batch ? st.shared->batch : n;
      while (n > 0) {
        botgate::Deliveries batch;
        const auto k = std::min(n, per);
        batch.reserve(k);
        for (std::uint64_t i = 0; i < k; ++i) batch.push_back({next_event(st), 1, {}});
        self->send(st.router, deliver_atom::value, std::move(batch));
        n -= k;
      }
      break;
    }
    case Mode::request:
      for (; n > 0; --n) {
        // No timeout: it would add a timer per request, which is not what is measured here.
        const auto& echo = st.shared->echoes[st.next_event % st.shared->echoes.size()];
        self->request(echo, caf::infinite, deliver_atom::value, next_event(st), std::uint32_t{1})
            .then([self](Outcome&) { on_answers(self, 1, 0); },
                  [self](caf::error&) { on_answers(self, 0, 1); });
      }
      break;
    case Mode::send:
      for (; n > 0; --n) {
        const auto& echo = st.shared->echoes[st.next_event % st.shared->echoes.size()];
        self->send(echo, deliver_atom::value, next_event(st), std::uint32_t{1});
      }
      break;
  }
}

void on_answers(DriverSelf self, std::uint64_t ok, std::uint64_t failed) {
  auto& st = self->state;
  auto& c = st.shared->counters[st.slot];
  // Only this driver writes its counters; a relaxed load+store is enough for main() to read.
  c.answered.store(c.answered.load(std::memory_order_relaxed) + ok, std::memory_order_relaxed);
  c.failed.store(c.failed.load(std::memory_order_relaxed) + failed, std::memory_order_relaxed);
  st.outstanding -= ok + failed;
  if (!st.shared->stop.load(std::memory_order_relaxed)) {
    issue(self, ok + failed);
  } else if (st.outstanding == 0) {
    c.done.store(true, std::memory_order_release);
    self->quit();
  }
}

caf::behavior driver(DriverSelf self, router_actor router, Shared* shared, std::size_t slot,
                     unsigned window) {
  self->state.router = std::move(router);
  self->state.shared = shared;
  self->state.slot = slot;
  // Starts on the first message, so that every driver is spawned before any of them runs.
  return {
      [self, window](botgate::tick_atom) { issue(self, window); },
      // The router's answers.
      [self](botgate::outcome_atom, const botgate::Answers& answers) {
        std::uint64_t ok = 0;
        for (const auto& a : answers) ok += a.outcome.error.empty() ? 1 : 0;
        on_answers(self, ok, answers.size() - ok);
      },
      // --mode send: the echo's answer.
      [self](botgate::done_atom, const Outcome&) { on_answers(self, 1, 0); },
  };
}

struct Result {
  double wall_s = 0;
  double cpu_s = 0;
  std::uint64_t decisions = 0;
  std::uint64_t failed = 0;
};

std::uint64_t sum_answered(const Shared& s) {
  std::uint64_t n = 0;
  for (const auto& c : s.counters) n += c.answered.load(std::memory_order_relaxed);
  return n;
}

std::uint64_t sum_failed(const Shared& s) {
  std::uint64_t n = 0;
  for (const auto& c : s.counters) n += c.failed.load(std::memory_order_relaxed);
  return n;
}

Result run_actors(const Options& opt, PolicyKind policy, const std::vector<EventPtr>& events) {
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", static_cast<std::size_t>(opt.threads));
  cfg.set("scheduler.max-throughput", static_cast<std::size_t>(opt.throughput));
  cfg.set("scheduler.policy", caf::atom_from_string(opt.scheduler));
  Result r;
  {
    caf::actor_system sys{cfg};
    // --routers N: N pools, each a router over its own stub targets.
    const auto names = target_names(opt.targets);
    std::vector<target_actor> targets;
    std::vector<router_actor> routers;
    for (unsigned k = 0; k < opt.routers; ++k) {
      std::vector<target_actor> mine;
      for (const auto& n : names) mine.push_back(sys.spawn(stub_target, n));
      botgate::RouterOptions ropts;
      ropts.policy = policy;
      for (unsigned i = 0; i < opt.targets; ++i) ropts.weights.push_back(i + 1);  // 1, 2, 3, ...
      ropts.targets.resize(opt.targets);
      for (auto& t : ropts.targets) t.limits.max_in_flight = opt.max_in_flight;
      routers.push_back(sys.spawn(botgate::router, mine, names, ropts));
      targets.insert(targets.end(), mine.begin(), mine.end());
    }

    Shared shared(opt.drivers);
    shared.events = &events;
    shared.batch = opt.batch;
    shared.mode = opt.mode == "request" ? Mode::request
                  : opt.mode == "send"  ? Mode::send
                                        : Mode::router;
    for (const auto& n : names) {
      if (shared.mode == Mode::request) shared.echoes.push_back(sys.spawn(echo_request, n));
      if (shared.mode == Mode::send) shared.echoes.push_back(sys.spawn(echo_send, n));
    }
    std::vector<caf::actor> drivers;
    for (unsigned i = 0; i < opt.drivers; ++i) {
      drivers.push_back(
          sys.spawn(driver, routers[i % routers.size()], &shared, std::size_t{i}, opt.window));
    }
    for (auto& d : drivers) caf::anon_send(d, botgate::tick_atom::value);

    std::this_thread::sleep_for(std::chrono::duration<double>(opt.warmup));
    const auto n0 = sum_answered(shared);
    const auto f0 = sum_failed(shared);
    const double cpu0 = process_cpu_s();
    const std::uint64_t t0 = bench::mono_ns();
    std::this_thread::sleep_for(std::chrono::duration<double>(opt.seconds));
    const auto n1 = sum_answered(shared);
    const auto f1 = sum_failed(shared);
    const double cpu1 = process_cpu_s();
    const std::uint64_t t1 = bench::mono_ns();
    r.wall_s = static_cast<double>(t1 - t0) / 1e9;
    r.cpu_s = cpu1 - cpu0;
    r.decisions = n1 - n0;
    r.failed = f1 - f0;

    // Let every outstanding request come back, then stop everything.
    shared.stop = true;
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    for (auto& c : shared.counters) {
      while (!c.done.load(std::memory_order_acquire) &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(1ms);
      }
    }
    for (auto& d : drivers) caf::anon_send_exit(d, caf::exit_reason::user_shutdown);
    for (auto& rt : routers) caf::anon_send_exit(rt, caf::exit_reason::user_shutdown);
    for (auto& t : targets) caf::anon_send_exit(t, caf::exit_reason::user_shutdown);
    for (auto& e : shared.echoes) caf::anon_send_exit(e, caf::exit_reason::user_shutdown);
  }  // ~actor_system waits for every actor
  return r;
}

// ---------------------------------------------------------------- Picker alone

template <class T>
inline void keep(const T& value) {
  asm volatile("" : : "g"(&value) : "memory");
}

Result run_picker(const Options& opt, PolicyKind policy, const std::vector<EventPtr>& events) {
  const auto names = target_names(opt.targets);
  std::vector<std::uint32_t> weights;
  for (unsigned i = 0; i < opt.targets; ++i) weights.push_back(i + 1);
  botgate::Picker picker(policy, names, weights);
  const botgate::TargetMask eligible(opt.targets, true);
  std::vector<std::uint32_t> in_flight(opt.targets, 0);
  std::vector<std::string_view> keys;
  for (const auto& ev : events) keys.push_back(ev->conversation);

  Result r;
  const double cpu0 = process_cpu_s();
  const std::uint64_t t0 = bench::mono_ns();
  const std::uint64_t budget_ns = static_cast<std::uint64_t>(opt.seconds * 1e9);
  std::size_t k = 0;
  std::uint64_t sum = 0;
  std::uint64_t t = t0;
  while (t - t0 < budget_ns) {
    for (int i = 0; i < 4096; ++i) {
      // in_flight moves like the router's would: +1 on pick, a decrement a few picks later.
      const auto pick = picker.pick({eligible, std::nullopt, keys[k], in_flight}).value_or(0);
      ++in_flight[pick];
      sum += pick;
      if (++k == keys.size()) k = 0;
      if (in_flight[pick] > 8) in_flight[pick] -= 8;
    }
    r.decisions += 4096;
    t = bench::mono_ns();
  }
  keep(sum);
  r.wall_s = static_cast<double>(t - t0) / 1e9;
  r.cpu_s = process_cpu_s() - cpu0;
  return r;
}

// The router's pure routing state (policies/balancer.hpp: health, ejection, limits, waiting,
// policy) alone: place, success, release, drain, as the router does per decision, without
// actors or clock reads (the time advances once per 4096 decisions).
Result run_balancer(const Options& opt, PolicyKind policy, const std::vector<EventPtr>& events) {
  const auto names = target_names(opt.targets);
  std::vector<std::uint32_t> weights;
  for (unsigned i = 0; i < opt.targets; ++i) weights.push_back(i + 1);
  auto now = botgate::Clock::now();
  botgate::Balancer balancer(policy, names, weights, {}, botgate::OutlierConfig{}, now);
  Result r;
  const double cpu0 = process_cpu_s();
  const std::uint64_t t0 = bench::mono_ns();
  const std::uint64_t budget_ns = static_cast<std::uint64_t>(opt.seconds * 1e9);
  std::size_t k = 0;
  std::uint64_t id = 0, sum = 0, t = t0;
  while (t - t0 < budget_ns) {
    for (int i = 0; i < 4096; ++i) {
      const auto pick = balancer.place(id++, events[k]->conversation, std::nullopt, now);
      if (++k == events.size()) k = 0;
      if (!pick) continue;  // cannot happen: no limits, every target healthy
      sum += *pick;
      balancer.on_success(*pick);
      balancer.release(*pick);
      keep(balancer.drain(now));
    }
    r.decisions += 4096;
    t = bench::mono_ns();
    now = botgate::Clock::now();
  }
  keep(sum);
  r.wall_s = static_cast<double>(t - t0) / 1e9;
  r.cpu_s = process_cpu_s() - cpu0;
  return r;
}

void report(const Options& opt, std::string_view what, PolicyKind policy, const Result& r) {
  const double per_s = r.wall_s > 0 ? static_cast<double>(r.decisions) / r.wall_s : 0;
  const double per_cpu_s = r.cpu_s > 0 ? static_cast<double>(r.decisions) / r.cpu_s : 0;
  const double ns_per = r.decisions ? r.wall_s * 1e9 / static_cast<double>(r.decisions) : 0;
  const double cpu_ns_per = r.decisions ? r.cpu_s * 1e9 / static_cast<double>(r.decisions) : 0;
  const bool actors = what != "picker" && what != "balancer";
  const std::string_view policy_name =
      what == "request" || what == "send" ? "none" : botgate::to_string(policy);
  if (opt.json) {
    fmt::print(
        "{{\"bench\":\"router\",\"path\":\"{}\",\"policy\":\"{}\",\"targets\":{},\"routers\":{},"
        "\"drivers\":{},\"window\":{},\"batch\":{},\"max_in_flight\":{},\"key_len\":{},"
        "\"threads\":{},\"scheduler\":\"{}\",\"decisions\":{},\"failed\":{},"
        "\"wall_s\":{:.6f},\"cpu_s\":{:.6f},\"decisions_per_s\":{:.0f},"
        "\"decisions_per_cpu_s\":{:.0f},\"ns_per_decision\":{:.1f},"
        "\"cpu_ns_per_decision\":{:.1f}}}\n",
        what, policy_name, opt.targets, what == "actors" ? opt.routers : 0,
        actors ? opt.drivers : 0, actors ? opt.window : 0, what == "actors" ? opt.batch : 0,
        what == "actors" ? opt.max_in_flight : 0, opt.key_len, actors ? opt.threads : 1,
        actors ? opt.scheduler : "-", r.decisions, r.failed, r.wall_s, r.cpu_s, per_s, per_cpu_s,
        ns_per, cpu_ns_per);
  } else {
    fmt::print("{:<8} {:<15} {:>12.0f} decisions/s {:>12.0f} per CPU-s {:>8.1f} CPU-ns each{}\n",
               what, policy_name, per_s, per_cpu_s, cpu_ns_per,
               r.failed ? fmt::format("  ({} failed)", r.failed) : std::string());
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = parse_args(argc, argv);
  if (!parsed) return 2;
  const Options& opt = *parsed;
  const auto events = make_events(opt.conversations, opt.key_len);
  if (!opt.json) {
    fmt::print(
        "router_bench: routers={} targets={} drivers={} window={} threads={} scheduler={} "
        "max-throughput={} seconds={}\n",
        opt.routers, opt.targets, opt.drivers, opt.window, opt.threads, opt.scheduler,
        opt.throughput, opt.seconds);
  }
  if (!opt.no_actors) {
    for (auto policy : opt.policies) {
      const bool routed = opt.mode == "router";
      report(opt, routed ? "actors" : opt.mode, policy, run_actors(opt, policy, events));
      if (!routed) break;  // no router, so no policy
    }
  }
  if (!opt.no_picker) {
    for (auto policy : opt.policies) report(opt, "picker", policy, run_picker(opt, policy, events));
    for (auto policy : opt.policies) {
      report(opt, "balancer", policy, run_balancer(opt, policy, events));
    }
  }
  return 0;
}
