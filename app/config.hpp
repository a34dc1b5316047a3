// The gateway's configuration: parsed once from TOML, validated, then immutable.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "actors/probe_options.hpp"
#include "core/log.hpp"
#include "core/units.hpp"
#include "policies/outlier.hpp"
#include "policies/pick.hpp"
#include "policies/route_rules.hpp"
#include "storage/sync_mode.hpp"

namespace botgate {

struct ServerConfig {
  std::string listen_host = "127.0.0.1";
  std::uint16_t listen_port = 8080;
  int io_threads = 1;
  std::string admin_token;             // empty: admin endpoints always answer 401
  std::uint64_t max_body = 1 << 20;    // "1MiB"
  std::uint64_t max_header = 8 << 10;  // "8KiB"
  Duration read_timeout = std::chrono::seconds(15);
  Duration write_timeout = std::chrono::seconds(15);
  Duration drain_timeout = std::chrono::seconds(10);
  // Inbound connections open at once; lowered at start-up to what the open-files limit leaves
  // after connection_reserve (app/gateway.hpp).
  std::uint32_t max_connections = 10000;
};

struct LogConfig {
  log::Level level = log::Level::info;
  log::Format format = log::Format::logfmt;
};

struct ActorsConfig {
  int threads = 1;
};

using FsyncMode = storage::SyncMode;  // [queue] fsync

struct QueueConfig {
  // Root of the shard logs (shard N in <dir>/shard-N/). A relative path is resolved
  // against the directory of the config file.
  std::string dir = "data";
  FsyncMode fsync = FsyncMode::batch;
  // fsync = batch: under sustained load, a shard's syncs start at most this often, so that
  // each covers more events (0: each sync starts as soon as the previous one ended).
  Duration commit_interval = std::chrono::milliseconds(1);
  Duration dedup_window = std::chrono::minutes(10);
  std::uint64_t memory_window = 10000;     // events per shard held in memory
  std::uint64_t segment_bytes = 64 << 20;  // "64MiB"
  // A shard refuses new events while the queue's filesystem has less free space than this, and
  // keeps it for completions, dead letters and dedup entries (storage/disk_room.hpp); 0: off.
  std::uint64_t min_free = 64 << 20;  // "64MiB"
  int shards = 4;
  std::uint64_t max_pending = 100000;  // per shard
  std::uint32_t max_attempts = 8;
  Duration max_age = std::chrono::hours(48);
};

struct BackoffConfig {
  Duration base = std::chrono::milliseconds(100);
  Duration cap = std::chrono::seconds(30);
};

enum class SourceKind { generic, wechat, wecom };

struct SourceConfig {
  std::string name;  // wecom: defaults to corp_id
  SourceKind kind = SourceKind::generic;
  std::string secret;  // generic: the HMAC key
  // The pool events go to when no [[routes]] rule matches; empty (wechat, wecom only): such
  // events are answered and dropped.
  std::string route;
  Duration max_skew = std::chrono::seconds(300);
  // wechat, wecom: the callback token, the 43-character EncodingAESKey (wechat: empty means
  // plaintext mode only), the Official Account's app id (the receiver id of its ciphertexts)
  // and the WeCom corp id (ditto, and the {corpId} of /callback/{corpId}).
  std::string token;
  std::string encoding_aes_key;
  std::string app_id;
  std::string corp_id;
  // The pool of account targets (wechat-oa, wecom-kf) replies to this source's conversations
  // are sent through; empty: backends' replies are dropped (and counted).
  std::string accounts;
  bool answer_ding = true;  // the built-in heartbeat responder: "ding" -> "dong"
  // wechat with an encoding_aes_key: plaintext callbacks are accepted too (while moving a
  // source to safe mode). Off, such a source takes safe or compatible mode only.
  bool allow_plaintext = false;
  // wechat, wecom: the callback is answered "success" by then even if storage is slower.
  Duration ack_deadline = std::chrono::milliseconds(4500);
  // wecom: the bearer token of POST /callback/decrypted/{corpId}, where a trusted front end
  // posts WXKF notifications it already decrypted; empty: that route is off for this corp.
  std::string decrypted_token;
};

std::string_view to_string(SourceKind kind) noexcept;

struct PoolConfig {
  std::string name;
  PolicyKind policy = PolicyKind::round_robin;
  std::vector<std::string> targets;
  OutlierConfig outlier;  // [pools.outlier]
};

enum class TargetKind { http, wechat_oa, wecom_kf };

// The default api_base of each account kind.
inline constexpr std::string_view kOfficialAccountApi = "https://api.weixin.qq.com";
inline constexpr std::string_view kWecomApi = "https://qyapi.weixin.qq.com";

std::string_view to_string(TargetKind kind) noexcept;
constexpr bool is_account(TargetKind kind) noexcept {
  return kind != TargetKind::http;
}

struct TargetConfig {
  std::string name;
  TargetKind kind = TargetKind::http;
  std::string url;  // http: http[s]://host[:port]/path; accounts: api_base
  // Parsed from url:
  bool tls = false;
  std::string host;
  std::uint16_t port = 80;
  std::string path = "/";  // accounts: the api_base path prefix, "" for none
  // wechat-oa: app id and secret; wecom-kf: corp id, corp secret and the customer-service
  // account (open_kfid) it sends as.
  std::string app_id;
  std::string app_secret;
  std::string corp_id;
  std::string corp_secret;
  std::string open_kfid;
  // Accounts: a token is refreshed this long before it expires.
  Duration token_margin = std::chrono::minutes(5);
  // Accounts: a token the platform gives a shorter life is not used (the fetch failed).
  Duration token_min_life = std::chrono::seconds(60);
  std::uint32_t weight = 1;
  Duration connect_timeout = std::chrono::seconds(1);
  Duration timeout = std::chrono::seconds(5);  // whole request/response exchange
  std::uint32_t max_connections = 32;
  std::uint32_t pipeline = 1;  // requests outstanding per connection (HTTP/1.1 pipelining)
  // Deliveries in flight at once; 0 in the file means max_connections * pipeline, which is
  // what parse_config leaves here.
  std::uint32_t max_in_flight = 0;
  double rate_limit = 0;  // deliveries per second (token bucket); 0: unlimited
  double burst = 0;       // bucket size; 0 in the file means default_burst(rate_limit)
  ProbeOptions probe;     // [targets.probe]
};

// Accounts: what identifies the credential a target's access token belongs to (kind, the
// parsed api_base, id and secret). Targets with the same key share one token.
std::string credential_key(const TargetConfig& t);

struct Config {
  ServerConfig server;
  LogConfig log;
  ActorsConfig actors;
  QueueConfig queue;
  BackoffConfig backoff;
  std::vector<SourceConfig> sources;
  std::vector<RouteRule> routes;  // [[routes]], in file order
  std::vector<PoolConfig> pools;
  std::vector<TargetConfig> targets;
};

struct ConfigError {
  std::uint32_t line = 0;  // 0 when the error has no position (e.g. file not found)
  std::string key;         // dotted path, e.g. "targets[1].url"
  std::string message;
};

using ConfigResult = std::variant<Config, std::vector<ConfigError>>;

// Parses and validates. Collects every error rather than stopping at the first.
// Applies BOTGATE_ADMIN_TOKEN from the environment when `env_admin_token` is set.
ConfigResult parse_config(std::string_view toml_text, std::string_view source_name,
                          const char* env_admin_token);
// Reads the file and resolves a relative queue.dir against the file's directory.
ConfigResult load_config(const std::string& path);

std::string format_error(const std::string& file, const ConfigError& e);

}  // namespace botgate
