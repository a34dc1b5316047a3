// Per-test scratch directory and the TOML config writer used by the integration tests.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace botgate::test {

// A fresh directory under $TMPDIR (or /tmp). Removed on destruction unless the
// current test has failed or BOTGATE_IT_KEEP=1 is set, in which case it is kept
// (and its path printed) so the botgate log can be read afterwards.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "botgate-it");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

  // Writes `text` to `name` inside the directory and returns the full path.
  std::filesystem::path write(const std::string& name, const std::string& text) const;

 private:
  std::filesystem::path path_;
};

std::string read_file(const std::filesystem::path& p);

// Everything a test usually tunes; the rest of the file uses the gateway defaults.
struct GatewayOptions {
  std::string source = "demo";
  std::string secret = "test-secret-0123456789";
  std::string pool = "backends";
  std::vector<std::uint16_t> backend_ports;  // one [[targets]] per port, all in `pool`
  std::string backend_path = "/events";
  std::string admin_token = "admin-token";
  std::string max_body = "64KiB";
  std::string max_header = "8KiB";
  std::string drain_timeout = "10s";
  std::uint16_t listen_port = 0;  // [server] listen = 127.0.0.1:<port>; 0: an ephemeral port
  std::string read_timeout;       // [server] read_timeout; empty: the gateway default
  std::string write_timeout;      // [server] write_timeout; empty: the gateway default
  std::string log_level = "info";
  std::string log_format = "logfmt";  // logfmt | json
  int io_threads = 1;
  int actor_threads = 2;
  int shards = 4;
  int max_pending = 100000;  // per shard
  int max_attempts = 8;
  std::string max_age = "1h";
  // The durable queue; each is left out of the file when empty (0), so botgate's
  // default applies.
  std::string queue_dir;      // [queue] dir, relative to the config file's directory
  std::string fsync;          // batch | always | none
  std::string dedup_window;   // e.g. "10m"
  int memory_window = 0;      // events per shard kept in memory
  std::string segment_bytes;  // e.g. "1MiB"
  std::string min_free;       // e.g. "1MiB"
  std::string backoff_base = "10ms";
  std::string backoff_cap = "200ms";
  std::string connect_timeout = "500ms";
  std::string target_timeout = "2s";
  int max_connections = 32;
  std::string extra;  // raw TOML appended at the end
};

// Renders a complete botgate config that listens on 127.0.0.1:<listen_port>.
std::string make_config(const GatewayOptions& o);

}  // namespace botgate::test
