#include "app/gateway.hpp"

#include <pthread.h>
#include <sys/resource.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/signal_set.hpp>
#include <condition_variable>
#include <csignal>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

#include "actors/account_target_actor.hpp"
#include "actors/dingdong.hpp"
#include "actors/http_target_actor.hpp"
#include "actors/prober_actor.hpp"
#include "actors/router_actor.hpp"
#include "actors/router_set.hpp"
#include "actors/shard_actor.hpp"
#include "actors/shard_set.hpp"
#include "actors/token_actor.hpp"
#include "app/http_api.hpp"
#include "app/http_util.hpp"
#include "app/queue_dir.hpp"
#include "core/log.hpp"
#include "transport/xml_pages.hpp"

namespace botgate {
namespace {

namespace net = boost::asio;

caf::actor_system_config actor_config(const Config& config) {
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", static_cast<std::size_t>(config.actors.threads));
  // Finite, so a busy shard or router cannot starve the other actors.
  cfg.set("scheduler.max-throughput", static_cast<std::size_t>(100));
  return cfg;
}

// Sum of events still held by the shards (queued or in flight).
std::uint64_t pending_events(caf::actor_system& sys, const ShardSet& shards) {
  caf::scoped_actor self{sys};
  std::uint64_t total = 0;
  for (const auto& s : shards.shards()) {
    self->request(s, std::chrono::seconds(2), pending_atom::value)
        .receive([&](std::uint64_t n) { total += n; },
                 [&](caf::error&) { total += 1; });  // unknown: assume work remains
  }
  return total;
}

template <typename Pred>
bool wait_until(Clock::time_point deadline, Pred done) {
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// The longest one send through a target can take: one exchange for a backend; for an account,
// a token fetch and the send, twice (a stale token is replaced and the send repeated).
Duration longest_send(const TargetConfig& t) {
  const Duration exchange = t.connect_timeout + t.timeout;
  return is_account(t.kind) ? 4 * exchange : exchange;
}

// How long a router waits for a target's answer: the longest send, twice (a kept-alive
// connection may fail and be retried once on a fresh one), plus slack.
Duration attempt_deadline(const Config& config) {
  Duration longest{0};
  for (const auto& t : config.targets) longest = std::max(longest, longest_send(t));
  return 2 * longest + std::chrono::seconds(1);
}

// The token actor of an account's credential, spawned by the first account that uses it.
struct TokenCaches {
  struct Entry {
    token_actor actor;
    std::shared_ptr<std::vector<TokenOptions::Watcher>> watchers;
    std::shared_ptr<std::vector<TargetMetrics*>> metrics;
    std::vector<std::string> targets;
  };
  std::map<std::string, Entry> by_credential;  // kind, api base as parsed, id and secret

  Entry& get(caf::actor_system& sys, const TargetConfig& t,
             std::shared_ptr<http::HttpClient> client, TargetMetrics* metrics) {
    const bool oa = t.kind == TargetKind::wechat_oa;
    const std::string& id = oa ? t.app_id : t.corp_id;
    // One cache per credential: two caches of one credential would replace each other's tokens.
    const std::string key = credential_key(t);
    auto [it, fresh] = by_credential.try_emplace(key);
    Entry& e = it->second;
    if (fresh) {
      TokenOptions o;
      o.api = oa ? wechat::AccountApi::official_account : wechat::AccountApi::wecom_kf;
      o.id = id;
      o.secret = oa ? t.app_secret : t.corp_secret;
      o.base_path = t.path;
      o.margin = t.token_margin;
      o.min_life = t.token_min_life;
      e.watchers = std::make_shared<std::vector<TokenOptions::Watcher>>();
      e.metrics = std::make_shared<std::vector<TargetMetrics*>>();
      o.watchers = e.watchers;
      o.metrics = e.metrics;
      e.actor = sys.spawn(token_cache, std::move(o), std::move(client));
    }
    e.targets.push_back(t.name);
    e.metrics->push_back(metrics);
    return e;
  }
};

http::ClientOptions client_options(const TargetConfig& t) {
  http::ClientOptions opts;
  opts.tls = t.tls;
  opts.host = t.host;
  opts.port = t.port;
  opts.connect_timeout = t.connect_timeout;
  opts.timeout = t.timeout;
  opts.max_connections = t.max_connections;
  opts.pipeline = t.pipeline;
  // A platform's send API has no idempotency key: a send written on a connection that broke
  // may have been taken, and goes back to the router as a failed attempt instead of out again.
  opts.resend_posts = !is_account(t.kind);
  return opts;
}

const TargetConfig& target_config(const Config& config, const std::string& name) {
  for (const auto& t : config.targets) {
    if (t.name == name) return t;
  }
  throw std::logic_error("validated config names an unknown target: " + name);
}

// The registry dongs come back through, when any target has a dingdong probe.
std::shared_ptr<DingRegistry> make_ding_registry(const Config& config) {
  std::vector<DingRegistry::Watch> watches;
  for (const auto& t : config.targets) {
    if (t.probe.kind == ProbeKind::dingdong) watches.push_back({t.probe.source, t.probe.peer});
  }
  if (watches.empty()) return nullptr;
  return std::make_shared<DingRegistry>(std::move(watches));
}

void stop_actors(const ShardSet& shards,
                 const std::unordered_map<std::string, router_actor>& routers,
                 const std::unordered_map<std::string, target_actor>& targets,
                 const std::vector<prober_actor>& probers, const TokenCaches& tokens) {
  const auto reason = caf::exit_reason::user_shutdown;
  for (const auto& [_, t] : tokens.by_credential) caf::anon_send_exit(t.actor, reason);
  for (const auto& s : shards.shards()) caf::anon_send_exit(s, reason);
  for (const auto& p : probers) caf::anon_send_exit(p, reason);
  for (const auto& [_, r] : routers) caf::anon_send_exit(r, reason);
  for (const auto& [_, t] : targets) caf::anon_send_exit(t, reason);
}

// What a long-running server needs of the process, before any thread starts. Returns the
// stop signals, blocked (block_stop_signals): a SIGTERM during recovery waits for the handler.
sigset_t prepare_process() {
  // A log reader that went away (a pipe to a dead shipper) must not kill the gateway: the
  // write fails instead. Sockets send with MSG_NOSIGNAL already.
  std::signal(SIGPIPE, SIG_IGN);
  // A write past a file-size limit (ulimit -f) must fail with EFBIG, which stops that shard's
  // log like any disk error (503, /readyz storage_failed), instead of killing the process
  // with SIGXFSZ and every shard with it.
  std::signal(SIGXFSZ, SIG_IGN);
  // Each shard keeps about five files open and each connection one: use the hard limit.
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_max != RLIM_INFINITY &&
      files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  return block_stop_signals();
}

}  // namespace

std::vector<int> stop_signals() {
  std::vector<int> out{SIGINT, SIGTERM};
  // A hang-up (the terminal botgate ran in closed, or a supervisor's "reload") stops it the same
  // graceful way: botgate reads its config only at start, and the default action would kill it
  // without a drain. Unless whoever started it ignored hang-ups (nohup, `trap '' HUP`): then it
  // keeps running, as it would without a handler.
  struct sigaction hup {};
  if (::sigaction(SIGHUP, nullptr, &hup) != 0 || hup.sa_handler != SIG_IGN) out.push_back(SIGHUP);
  return out;
}

sigset_t block_stop_signals() {
  sigset_t stop;
  sigemptyset(&stop);
  for (const int sig : stop_signals()) sigaddset(&stop, sig);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  return stop;
}

std::uint64_t connection_reserve(const Config& config) {
  constexpr std::uint64_t kProcess = 64;
  constexpr std::uint64_t kPerShard = 12;
  std::uint64_t reserve = kProcess + kPerShard * static_cast<std::uint64_t>(config.queue.shards);
  for (const auto& t : config.targets) reserve += t.max_connections + 2;
  return reserve;
}

std::uint64_t connection_cap(const Config& config, std::uint64_t open_files) {
  const std::uint64_t reserve = connection_reserve(config);
  if (open_files <= reserve) return 0;
  return std::min<std::uint64_t>(config.server.max_connections, open_files - reserve);
}

namespace {

// The inbound connection cap for this process's open-files limit (raised to its hard limit by
// prepare_process), or nullopt, logged, when the limit leaves no room for connections.
std::optional<std::size_t> inbound_connection_cap(const Config& config) {
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) != 0 || files.rlim_cur == RLIM_INFINITY) {
    return config.server.max_connections;
  }
  const auto cap = connection_cap(config, files.rlim_cur);
  const auto reserve = connection_reserve(config);
  if (cap == 0) {
    log::error("the open files limit leaves no descriptors for connections",
               {{"open_files", static_cast<std::uint64_t>(files.rlim_cur)},
                {"reserved", reserve},
                {"hint",
                 "raise the limit (ulimit -n, LimitNOFILE=) or lower shards or targets' "
                 "max_connections"}});
    return std::nullopt;
  }
  if (cap < config.server.max_connections) {
    log::warn("max_connections lowered to fit the open files limit",
              {{"max_connections", cap},
               {"configured", config.server.max_connections},
               {"open_files", static_cast<std::uint64_t>(files.rlim_cur)},
               {"reserved", reserve}});
  }
  return static_cast<std::size_t>(cap);
}

}  // namespace

int run_gateway(const Config& config) {
  const sigset_t blocked = prepare_process();
  log::configure(config.log.level, config.log.format);
  const auto max_connections = inbound_connection_cap(config);
  if (!max_connections) return 1;
  use_xml_page_cache();  // before any thread parses a callback (transport/xml_pages.hpp)

  // Recover the durable queue before anything can be accepted.
  auto opened = open_queue(config.queue);
  if (!opened) return 1;
  const auto queue_lock = std::move(opened->lock);  // held until every actor has stopped

  std::vector<std::string> target_names;
  for (const auto& t : config.targets) target_names.push_back(t.name);
  std::vector<std::string> pool_names;
  for (const auto& p : config.pools) pool_names.push_back(p.name);
  Metrics metrics(static_cast<std::size_t>(config.queue.shards), target_names, pool_names);

  net::io_context ioc(config.server.io_threads);
  auto work = net::make_work_guard(ioc);

  caf::actor_system_config caf_cfg = actor_config(config);
  caf::actor_system sys{caf_cfg};

  // Targets, each with its own keep-alive pool on the Asio side.
  std::unordered_map<std::string, target_actor> targets;
  std::vector<prober_actor> probers;
  TokenCaches tokens;
  std::vector<std::shared_ptr<http::HttpClient>> clients;
  std::unordered_map<std::string, std::shared_ptr<http::HttpClient>> probe_clients;
  for (const auto& t : config.targets) {
    std::shared_ptr<http::HttpClient> client;
    try {
      client = http::HttpClient::create(ioc, client_options(t));
      if (t.probe.kind == ProbeKind::http) {
        // Its own connection, so a probe never queues behind deliveries.
        http::ClientOptions opts = client_options(t);
        opts.connect_timeout = std::min(t.connect_timeout, t.probe.timeout);
        opts.timeout = t.probe.timeout;
        opts.max_connections = 1;
        opts.pipeline = 1;
        probe_clients[t.name] = http::HttpClient::create(ioc, opts);
        clients.push_back(probe_clients[t.name]);
      }
    } catch (const boost::system::system_error& e) {
      log::error("cannot resolve target",
                 {{"target", t.name}, {"host", t.host}, {"error", e.code().message()}});
      return 1;
    }
    clients.push_back(client);
    TargetMetrics* tm = metrics.find_target(t.name);
    if (!is_account(t.kind)) {
      targets.emplace(t.name, sys.spawn(http_target, t.name, t.path, client, tm));
      continue;
    }
    tm->account = true;
    AccountOptions ao;
    ao.name = t.name;
    ao.api = t.kind == TargetKind::wechat_oa ? wechat::AccountApi::official_account
                                             : wechat::AccountApi::wecom_kf;
    ao.base_path = t.path;
    ao.open_kfid = t.open_kfid;
    ao.token_timeout = 2 * (t.connect_timeout + t.timeout);
    auto& cache = tokens.get(sys, t, client, tm);
    targets.emplace(t.name, sys.spawn(account_target, std::move(ao), client, cache.actor, tm));
  }

  std::unordered_map<std::string, router_actor> routers;
  for (const auto& p : config.pools) {
    std::vector<target_actor> members;
    RouterOptions ropts;
    ropts.pool = p.name;
    ropts.policy = p.policy;
    ropts.attempt_timeout = attempt_deadline(config);
    ropts.max_age = config.queue.max_age;
    ropts.max_attempts = config.queue.max_attempts;
    ropts.outlier = p.outlier;
    ropts.metrics = metrics.find_pool(p.name);
    for (const auto& name : p.targets) {
      members.push_back(targets.at(name));
      const TargetConfig& t = target_config(config, name);
      ropts.weights.push_back(t.weight);
      // A platform send may be with the platform when its account goes down, and it has no
      // idempotency key: it is not sent through another account as well.
      ropts.targets.push_back(
          RouterTargetOptions{TargetLimits{t.max_in_flight, t.rate_limit, t.burst}, t.probe.kind,
                              metrics.find_target(name), !is_account(t.kind)});
    }
    routers.emplace(p.name, sys.spawn(router, std::move(members), p.targets, ropts));
  }
  // Token actors report refused credentials to the routers of their accounts. Filled before
  // any shard or prober exists, so before the first token can be asked for.
  for (auto& [_, cache] : tokens.by_credential) {
    for (const auto& name : cache.targets) {
      for (const auto& p : config.pools) {
        if (std::find(p.targets.begin(), p.targets.end(), name) != p.targets.end()) {
          cache.watchers->push_back(TokenOptions::Watcher{name, routers.at(p.name)});
        }
      }
    }
  }

  // One prober per probed target, reporting to every router that has it.
  auto dings = make_ding_registry(config);
  for (const auto& t : config.targets) {
    if (t.probe.kind == ProbeKind::none) continue;
    std::vector<router_actor> watchers;
    for (const auto& p : config.pools) {
      if (std::find(p.targets.begin(), p.targets.end(), t.name) != p.targets.end()) {
        watchers.push_back(routers.at(p.name));
      }
    }
    ProbeChannel channel;
    if (t.probe.kind == ProbeKind::http) {
      channel.client = probe_clients.at(t.name);
    } else {
      channel.via = targets.at(t.name);
      channel.registry = dings;
    }
    probers.push_back(sys.spawn(prober, t.name, t.probe, std::move(watchers),
                                metrics.find_target(t.name), std::move(channel)));
  }

  std::unordered_map<std::string, SourceRoutes> source_routes;
  for (const auto& s : config.sources)
    source_routes.emplace(s.name, SourceRoutes{s.route, s.accounts});

  // Ready once every shard's log has started and probed the disk, so that /readyz never says
  // ready while a shard below min_free has not said so yet.
  std::atomic<bool> ready{false};
  std::atomic<int> logs_started{0};
  std::vector<shard_actor> shard_actors;
  for (int i = 0; i < config.queue.shards; ++i) {
    ShardOptions opts;
    opts.index = static_cast<std::size_t>(i);
    opts.log_started = [&ready, &logs_started, shards = config.queue.shards] {
      if (logs_started.fetch_add(1) + 1 == shards) ready.store(true);
    };
    opts.sources = source_routes;
    opts.max_pending = config.queue.max_pending;
    opts.max_attempts = config.queue.max_attempts;
    opts.max_age = config.queue.max_age;
    opts.backoff = Backoff{config.backoff.base, config.backoff.cap};
    opts.memory_window = config.queue.memory_window;
    opts.commit_interval = config.queue.commit_interval;
    opts.min_free = config.queue.min_free;
    opts.dedup_window =
        std::chrono::duration_cast<std::chrono::milliseconds>(config.queue.dedup_window);
    auto& o = opened->shards[static_cast<std::size_t>(i)];
    shard_actors.push_back(sys.spawn(shard, opts, &metrics, routers, o.store, o.recovered));
  }
  opened.reset();
  ShardSet shards(sys, std::move(shard_actors));

  std::vector<router_actor> router_list;
  for (auto& [_, r] : routers) router_list.push_back(r);
  RouterSet router_set(sys, std::move(router_list));

  HttpApi api(config, metrics, shards, router_set, dings.get(), ready, ioc);
  http::ServerOptions sopts;
  sopts.host = config.server.listen_host;
  sopts.port = config.server.listen_port;
  sopts.max_body = config.server.max_body;
  sopts.max_header = static_cast<std::uint32_t>(config.server.max_header);
  sopts.read_timeout = config.server.read_timeout;
  sopts.write_timeout = config.server.write_timeout;
  sopts.max_connections = *max_connections;
  http::HttpServer server(
      ioc, sopts,
      [&api](http::Request&& req, http::Responder r) { api.handle(std::move(req), std::move(r)); },
      [&api](http::Refusal why, const std::string& peer, std::string_view target) {
        api.on_refusal(why, peer, target);
      });

  std::uint16_t port = 0;
  try {
    port = server.start();
  } catch (const boost::system::system_error& e) {
    log::error("cannot listen", {{"address", config.server.listen_host},
                                 {"port", config.server.listen_port},
                                 {"error", e.code().message()}});
    stop_actors(shards, routers, targets, probers, tokens);
    return 1;
  }

  std::mutex stop_mutex;
  std::condition_variable stop_cv;
  int stop_signal = 0;
  net::signal_set signals(ioc);
  for (const int sig : stop_signals()) signals.add(sig);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    std::lock_guard lock(stop_mutex);
    stop_signal = sig;
    stop_cv.notify_all();
  });
  // Handled from here on; one that came during start-up is delivered now.
  pthread_sigmask(SIG_UNBLOCK, &blocked, nullptr);

  std::vector<std::thread> io_threads;
  for (int i = 0; i < config.server.io_threads; ++i) io_threads.emplace_back([&ioc] { ioc.run(); });
  log::info("listening", {{"address", config.server.listen_host}, {"port", port}});
  log::info("started", {{"version", BOTGATE_VERSION},
                        {"io_threads", config.server.io_threads},
                        {"actor_threads", config.actors.threads},
                        {"shards", config.queue.shards},
                        {"queue_dir", config.queue.dir},
                        {"fsync", to_string(config.queue.fsync)},
                        {"targets", config.targets.size()}});

  {
    std::unique_lock lock(stop_mutex);
    stop_cv.wait(lock, [&] { return stop_signal != 0; });
  }

  // Graceful drain: stop accepting, let in-flight requests finish, then give the
  // shards until drain_timeout to deliver what they acknowledged. What is left stays
  // in the shard logs and resumes at the next start.
  log::info("draining",
            {{"signal", stop_signal}, {"name", std::string("SIG") + sigabbrev_np(stop_signal)}});
  ready.store(false);
  server.stop_accepting();
  server.drain();
  const auto deadline = Clock::now() + config.server.drain_timeout;
  const bool connections_closed =
      wait_until(deadline, [&] { return server.open_connections() == 0; });
  std::uint64_t left = 0;
  const bool delivered =
      wait_until(deadline, [&] { return (left = pending_events(sys, shards)) == 0; });
  if (!connections_closed) {
    log::warn("drain timeout with open connections", {{"open", server.open_connections()}});
  }
  log_refusals_left_out();
  if (!delivered) {
    log::warn("drain timeout: events stay queued on disk and resume at the next start",
              {{"events", left}});
  }

  stop_actors(shards, routers, targets, probers, tokens);
  for (auto& c : clients) c->shutdown();
  // Before `api` and `shards` go: short-lived admin actors may still call back into them.
  sys.await_all_actors_done();
  work.reset();
  ioc.stop();
  for (auto& t : io_threads) t.join();
  log::info("stopped", {{"queued", left}});
  return 0;
}

}  // namespace botgate
