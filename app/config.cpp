#include "app/config.hpp"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

#include "app/http_util.hpp"
#include "core/event.hpp"
#include "policies/token_bucket.hpp"
#include "transport/wechat_crypto.hpp"

namespace botgate {
namespace {

constexpr std::uint64_t kKiB = 1ull << 10;
constexpr std::uint64_t kMiB = 1ull << 20;

// ---------------------------------------------------------------------------
// Small lexical helpers

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool is_alnum(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool is_name_char(char c) {
  return is_alnum(c) || c == '_' || c == '.' || c == '-';
}

// Printable ASCII without spaces.
bool is_visible_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

bool is_bare_key(std::string_view k) {
  if (k.empty()) return false;
  return std::all_of(k.begin(), k.end(),
                     [](char c) { return is_alnum(c) || c == '_' || c == '-'; });
}

// Keys that are not TOML bare keys are quoted in paths so "a.b" stays unambiguous.
std::string key_text(std::string_view k) {
  if (is_bare_key(k)) return std::string(k);
  return "\"" + std::string(k) + "\"";
}

std::string join(std::string_view prefix, std::string_view key) {
  if (prefix.empty()) return key_text(key);
  return std::string(prefix) + "." + key_text(key);
}

std::string indexed(std::string_view prefix, std::size_t i) {
  return std::string(prefix) + "[" + std::to_string(i) + "]";
}

std::uint32_t line_of(const toml::node& n) {
  return n.source().begin.line;
}

// Decimal digits only, no sign, no leading '+'. Returns nullopt on overflow.
std::optional<std::uint32_t> parse_port(std::string_view s) {
  if (s.empty() || s.size() > 5) return std::nullopt;
  std::uint32_t v = 0;
  for (char c : s) {
    if (!is_digit(c)) return std::nullopt;
    v = v * 10 + static_cast<std::uint32_t>(c - '0');
  }
  if (v > 65535) return std::nullopt;
  return v;
}

// Dotted quad, each octet 0..255 without leading zeros (like inet_pton).
bool is_ipv4(std::string_view s) {
  int parts = 0;
  while (true) {
    std::size_t i = 0;
    unsigned v = 0;
    while (i < s.size() && is_digit(s[i])) {
      if (i == 3) return false;
      v = v * 10 + static_cast<unsigned>(s[i] - '0');
      ++i;
    }
    if (i == 0 || v > 255 || (i > 1 && s[0] == '0')) return false;
    ++parts;
    s.remove_prefix(i);
    if (s.empty()) break;
    if (s[0] != '.' || parts == 4) return false;
    s.remove_prefix(1);
  }
  return parts == 4;
}

// RFC 1123 host name: dot-separated labels of letters, digits and '-'.
bool is_hostname(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  bool all_numeric = true;
  while (true) {
    auto dot = s.find('.');
    auto label = s.substr(0, dot);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!is_alnum(c) && c != '-') return false;
      if (!is_digit(c)) all_numeric = false;
    }
    if (dot == std::string_view::npos) break;
    s.remove_prefix(dot + 1);
  }
  // "999.1.1.1" looks like an address, not a name: the caller reports it as bad.
  return !all_numeric;
}

// ---------------------------------------------------------------------------
// Error collection and typed access to one table

class Errors {
 public:
  void add(std::uint32_t line, std::string key, std::string message) {
    list_.push_back(ConfigError{line, std::move(key), std::move(message)});
  }
  void add(const toml::node& n, std::string key, std::string message) {
    add(line_of(n), std::move(key), std::move(message));
  }
  bool empty() const { return list_.empty(); }
  std::vector<ConfigError> take() {
    std::stable_sort(list_.begin(), list_.end(),
                     [](const ConfigError& a, const ConfigError& b) { return a.line < b.line; });
    return std::move(list_);
  }

 private:
  std::vector<ConfigError> list_;
};

// What a duration key accepts beyond "a positive duration".
struct DurationLimits {
  bool zero_allowed = false;  // "0s" turns a feature off
  // No setting needs more than a year, and deadlines computed from settings (an attempt's
  // is several timeouts added up) must not overflow.
  Duration max = std::chrono::hours(24 * 365);
  std::string_view why_max = "no duration may be longer";  // said after "must be at most <max>"
  Duration min{0};  // above zero: the shortest allowed (a timer that fires this often)
};

// A view of one TOML table at `path`. Construction reports every key not in
// `allowed`; the getters leave the output untouched when the key is absent and
// report (then also leave it untouched) when the value is wrong.
class Table {
 public:
  Table(Errors& errors, const toml::table& table, std::string path,
        std::initializer_list<std::string_view> allowed)
      : Table(errors, table, std::move(path), std::span(allowed.begin(), allowed.size())) {}
  Table(Errors& errors, const toml::table& table, std::string path,
        std::span<const std::string_view> allowed)
      : errors_(errors), table_(table), path_(std::move(path)) {
    for (auto&& [k, v] : table_) {
      if (std::find(allowed.begin(), allowed.end(), k.str()) == allowed.end()) {
        errors_.add(v, join(path_, k.str()), "unknown key");
      }
    }
  }

  std::uint32_t line() const { return std::max<std::uint32_t>(1, line_of(table_)); }
  std::string path(std::string_view key) const { return join(path_, key); }
  const toml::node* node(std::string_view key) const { return table_.get(key); }

  // Reports a missing key at the table's own line.
  const toml::node* required(std::string_view key) {
    const toml::node* n = node(key);
    if (n == nullptr) errors_.add(line(), path(key), "missing required key");
    return n;
  }

  // Strings. `secret` keeps the value out of every message.
  const toml::node* string(std::string_view key, std::string& out, bool is_required,
                           bool non_empty) {
    const toml::node* n = is_required ? required(key) : node(key);
    if (n == nullptr) return nullptr;
    const auto* s = n->as_string();
    if (s == nullptr) {
      errors_.add(*n, path(key), "expected a string");
      return nullptr;
    }
    if (non_empty && s->get().empty()) {
      errors_.add(*n, path(key), "must not be empty");
      return nullptr;
    }
    out = s->get();
    return n;
  }

  template <typename T>
  void integer(std::string_view key, T& out, std::int64_t lo, std::int64_t hi) {
    const toml::node* n = node(key);
    if (n == nullptr) return;
    const auto* i = n->as_integer();
    if (i == nullptr) {
      errors_.add(*n, path(key), "expected an integer");
      return;
    }
    const std::int64_t v = i->get();
    if (v < lo || v > hi) {
      if (hi == std::numeric_limits<std::int64_t>::max()) {
        errors_.add(*n, path(key), "must be at least " + std::to_string(lo));
      } else {
        errors_.add(*n, path(key),
                    "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
      }
      return;
    }
    out = static_cast<T>(v);
  }

  // An integer or a float, within [lo, hi].
  void number(std::string_view key, double& out, double lo, double hi) {
    const toml::node* n = node(key);
    if (n == nullptr) return;
    std::optional<double> v;
    if (const auto* i = n->as_integer()) v = static_cast<double>(i->get());
    if (const auto* f = n->as_floating_point()) v = f->get();
    if (!v) {
      errors_.add(*n, path(key), "expected a number");
      return;
    }
    if (!(*v >= lo && *v <= hi)) {
      errors_.add(*n, path(key), fmt::format("must be between {} and {}", lo, hi));
      return;
    }
    out = *v;
  }

  // A nested table (`[parent.key]`); nullptr when absent or not a table (reported).
  const toml::table* table(std::string_view key) {
    const toml::node* n = node(key);
    if (n == nullptr) return nullptr;
    if (const auto* t = n->as_table()) return t;
    errors_.add(*n, path(key), "expected a table ([" + path(key) + "])");
    return nullptr;
  }

  // Returns false when the key is present but invalid.
  bool duration(std::string_view key, Duration& out, const DurationLimits& limits = {}) {
    const toml::node* n = node(key);
    if (n == nullptr) return true;
    const auto* s = n->as_string();
    if (s == nullptr) {
      errors_.add(*n, path(key),
                  "expected a string (a duration like \"250ms\", \"2s\" or \"1h30m\")");
      return false;
    }
    auto d = parse_duration(s->get());
    if (!d) {
      errors_.add(*n, path(key),
                  "invalid duration '" + s->get() +
                      "' (expected <integer><unit>..., unit ns|us|ms|s|m|h|d, e.g. \"250ms\", "
                      "\"2s\", \"1h30m\")");
      return false;
    }
    if (d->count() == 0 && !limits.zero_allowed) {
      errors_.add(*n, path(key), "duration must be greater than zero");
      return false;
    }
    if (*d > limits.max) {
      errors_.add(*n, path(key),
                  "must be at most " + format_duration(limits.max) + " (" +
                      std::string(limits.why_max) + ")");
      return false;
    }
    if (d->count() != 0 && *d < limits.min) {
      errors_.add(*n, path(key), "must be at least " + format_duration(limits.min));
      return false;
    }
    out = *d;
    return true;
  }

  // A size is a string like "1MiB" or an integer number of bytes.
  void size(std::string_view key, std::uint64_t& out, std::uint64_t lo, std::uint64_t hi,
            std::string_view lo_text, std::string_view hi_text) {
    const toml::node* n = node(key);
    if (n == nullptr) return;
    std::optional<std::uint64_t> v;
    if (const auto* i = n->as_integer()) {
      if (i->get() < 0) {
        errors_.add(*n, path(key), "size must not be negative");
        return;
      }
      v = static_cast<std::uint64_t>(i->get());
    } else if (const auto* s = n->as_string()) {
      v = parse_size(s->get());
      if (!v) {
        errors_.add(*n, path(key),
                    "invalid size '" + s->get() +
                        "' (expected <integer>[B|KiB|MiB|GiB|KB|MB|GB], e.g. \"1MiB\")");
        return;
      }
    } else {
      errors_.add(*n, path(key), "expected a size (a string like \"1MiB\" or an integer of bytes)");
      return;
    }
    if (*v < lo || *v > hi) {
      errors_.add(*n, path(key),
                  "size must be between " + std::string(lo_text) + " and " + std::string(hi_text));
      return;
    }
    out = *v;
  }

 private:
  Errors& errors_;
  const toml::table& table_;
  std::string path_;
};

// Looks up a top-level table; reports anything that is not a table.
const toml::table* section(Errors& errors, const toml::table& root, std::string_view key) {
  const toml::node* n = root.get(key);
  if (n == nullptr) return nullptr;
  if (const auto* t = n->as_table()) return t;
  errors.add(*n, std::string(key), "expected a table ([" + std::string(key) + "])");
  return nullptr;
}

// Returns the tables of an array-of-tables section, reporting bad shapes.
std::vector<const toml::table*> entries(Errors& errors, const toml::table& root,
                                        std::string_view key) {
  std::vector<const toml::table*> out;
  const toml::node* n = root.get(key);
  const std::string k(key);
  if (n == nullptr) {
    errors.add(std::max<std::uint32_t>(1, line_of(root)), k,
               "at least one [[" + k + "]] entry is required");
    return out;
  }
  const auto* arr = n->as_array();
  if (arr == nullptr) {
    errors.add(*n, k, "expected an array of tables ([[" + k + "]])");
    return out;
  }
  if (arr->empty()) {
    errors.add(*n, k, "at least one [[" + k + "]] entry is required");
    return out;
  }
  for (std::size_t i = 0; i < arr->size(); ++i) {
    const toml::node& e = *arr->get(i);
    if (const auto* t = e.as_table()) {
      out.push_back(t);
    } else {
      errors.add(e, indexed(k, i), "expected a table");
      out.push_back(nullptr);
    }
  }
  return out;
}

// Tracks names within one kind of entry and reports duplicates and bad characters.
class Names {
 public:
  explicit Names(std::string what) : what_(std::move(what)) {}

  // Returns true when the name is valid and new.
  bool add(Errors& errors, const toml::node& n, const std::string& path, const std::string& name) {
    if (!std::all_of(name.begin(), name.end(), is_name_char)) {
      errors.add(
          n, path,
          "invalid " + what_ + " name '" + name + "' (allowed characters: A-Z a-z 0-9 _ . -)");
      return false;
    }
    auto [it, inserted] = lines_.emplace(name, line_of(n));
    if (!inserted) {
      errors.add(n, path,
                 "duplicate " + what_ + " name '" + name + "' (first defined on line " +
                     std::to_string(it->second) + ")");
      return false;
    }
    return true;
  }

 private:
  std::string what_;
  std::map<std::string, std::uint32_t> lines_;
};

// The admin token is compared with the token of an `Authorization: Bearer` header, which
// HTTP strips of surrounding whitespace and which cannot hold control characters.
constexpr std::string_view kBearerTokenRule =
    "must be printable ASCII without spaces (it is compared with the Authorization header)";
bool valid_bearer_token(std::string_view token) {
  return is_visible_ascii(token);
}

// toml++ parses a dotted key by recursion, a level per dot: some tens of thousands of them
// overflow the stack. No configuration has lines with a fraction of this many dots outside
// strings and comments, so a longer one is refused before the parser sees it.
constexpr std::size_t kMaxDotsPerLine = 1000;
std::optional<ConfigError> refuse_deep_keys(std::string_view text) {
  std::uint32_t line = 1;
  std::size_t dots = 0;
  std::string_view open;  // the delimiter of the string we are in: " ' """ or '''
  bool comment = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      ++line;
      dots = 0;
      comment = false;
      if (open.size() == 1) open = {};  // a one-line string ends with its line
    } else if (comment) {
    } else if (!open.empty()) {
      if (c == '\\' && open[0] == '"') {
        if (i + 1 < text.size() && text[i + 1] != '\n') ++i;  // an escaped character
      } else if (text.substr(i).starts_with(open)) {
        i += open.size() - 1;
        open = {};
      }
    } else if (c == '"' || c == '\'') {
      const std::string_view triple = c == '"' ? R"(""")" : "'''";
      open = text.substr(i).starts_with(triple) ? triple : triple.substr(0, 1);
      i += open.size() - 1;
    } else if (c == '#') {
      comment = true;
    } else if (c == '.' && ++dots > kMaxDotsPerLine) {
      return ConfigError{line, "",
                         "more than " + std::to_string(kMaxDotsPerLine) +
                             " dots in one line: keys are not nested that deep"};
    }
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Sections

void parse_listen(Errors& errors, Table& t, ServerConfig& out) {
  std::string listen;
  const toml::node* n = t.string("listen", listen, false, false);
  if (n == nullptr) return;
  const std::string key = t.path("listen");
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    errors.add(*n, key, "expected \"host:port\", e.g. \"127.0.0.1:8080\"");
    return;
  }
  std::string host = listen.substr(0, colon);
  auto port = parse_port(std::string_view(listen).substr(colon + 1));
  bool ok = true;
  if (host == "localhost") {
    host = "127.0.0.1";
  } else if (!is_ipv4(host)) {
    errors.add(*n, key, "host '" + host + "' must be an IPv4 address or \"localhost\"");
    ok = false;
  } else if (const int first = std::stoi(host.substr(0, host.find('.')));
             first >= 224 || (first == 0 && host != "0.0.0.0")) {
    // Multicast, reserved and broadcast addresses take no TCP connection; 0.x.y.z is no
    // address of this host. A listener would bind, or fail only at start, and never serve.
    errors.add(*n, key,
               "host '" + host + "' cannot take connections: use an address of this host, " +
                   "0.0.0.0 (all of them) or 127.0.0.1");
    ok = false;
  }
  if (!port) {
    errors.add(*n, key, "port must be an integer between 0 and 65535");
    ok = false;
  }
  if (!ok) return;
  out.listen_host = host;
  out.listen_port = static_cast<std::uint16_t>(*port);
}

void parse_server(Errors& errors, const toml::table& root, ServerConfig& out) {
  const toml::table* tbl = section(errors, root, "server");
  if (tbl == nullptr) return;
  Table t(errors, *tbl, "server",
          {"listen", "io_threads", "admin_token", "max_body", "max_header", "read_timeout",
           "write_timeout", "drain_timeout", "max_connections"});
  parse_listen(errors, t, out);
  t.integer("io_threads", out.io_threads, 1, 64);
  t.integer("max_connections", out.max_connections, 1, 1'000'000);
  if (const toml::node* n = t.string("admin_token", out.admin_token, false, false)) {
    if (!valid_bearer_token(out.admin_token)) {
      errors.add(*n, t.path("admin_token"), std::string(kBearerTokenRule));  // never echoed
    }
  }
  t.size("max_body", out.max_body, 1, 64 * kMiB, "1 byte", "64MiB");
  t.size("max_header", out.max_header, kKiB, kMiB, "1KiB", "1MiB");
  t.duration("read_timeout", out.read_timeout);
  t.duration("write_timeout", out.write_timeout);
  t.duration("drain_timeout", out.drain_timeout);
}

void parse_log(Errors& errors, const toml::table& root, LogConfig& out) {
  const toml::table* tbl = section(errors, root, "log");
  if (tbl == nullptr) return;
  Table t(errors, *tbl, "log", {"level", "format"});
  std::string s;
  if (const toml::node* n = t.string("level", s, false, false)) {
    if (auto level = log::parse_level(s)) {
      out.level = *level;
    } else {
      errors.add(*n, t.path("level"),
                 "unknown log level '" + s + "' (expected debug, info, warn or error)");
    }
  }
  if (const toml::node* n = t.string("format", s, false, false)) {
    if (auto format = log::parse_format(s)) {
      out.format = *format;
    } else {
      errors.add(*n, t.path("format"), "unknown log format '" + s + "' (expected logfmt or json)");
    }
  }
}

void parse_actors(Errors& errors, const toml::table& root, ActorsConfig& out) {
  const toml::table* tbl = section(errors, root, "actors");
  if (tbl == nullptr) return;
  Table t(errors, *tbl, "actors", {"threads"});
  t.integer("threads", out.threads, 1, 64);
}

void parse_queue(Errors& errors, const toml::table& root, QueueConfig& out) {
  const toml::table* tbl = section(errors, root, "queue");
  if (tbl == nullptr) return;
  Table t(errors, *tbl, "queue",
          {"dir", "fsync", "commit_interval", "dedup_window", "memory_window", "segment_bytes",
           "min_free", "shards", "max_pending", "max_attempts", "max_age"});
  constexpr auto int_max = std::numeric_limits<std::int64_t>::max();
  t.string("dir", out.dir, false, true);
  std::string mode;
  if (const toml::node* n = t.string("fsync", mode, false, false)) {
    if (auto m = storage::parse_sync_mode(mode)) {
      out.fsync = *m;
    } else {
      errors.add(*n, t.path("fsync"),
                 "unknown fsync mode '" + mode + "' (expected batch, always or none)");
    }
  }
  t.duration(
      "commit_interval", out.commit_interval,
      {true, std::chrono::milliseconds(100), "every ack of a busy shard may wait this long"});
  t.duration("dedup_window", out.dedup_window);
  t.integer("memory_window", out.memory_window, 16, int_max);
  t.size("segment_bytes", out.segment_bytes, kMiB, 4096 * kMiB, "1MiB", "4GiB");
  t.size("min_free", out.min_free, 0, 1024 * 1024 * kMiB, "0", "1024GiB");
  t.integer("shards", out.shards, 1, 1024);
  t.integer("max_pending", out.max_pending, 1, int_max);
  t.integer("max_attempts", out.max_attempts, 1, std::numeric_limits<std::uint32_t>::max());
  t.duration("max_age", out.max_age);
}

void parse_backoff(Errors& errors, const toml::table& root, BackoffConfig& out) {
  const toml::table* tbl = section(errors, root, "backoff");
  if (tbl == nullptr) return;
  Table t(errors, *tbl, "backoff", {"base", "cap"});
  const bool base_ok = t.duration("base", out.base);
  const bool cap_ok = t.duration("cap", out.cap);
  if (base_ok && cap_ok && out.cap < out.base) {
    const toml::node* n = t.node("cap");
    if (n == nullptr) n = t.node("base");
    errors.add(n != nullptr ? line_of(*n) : t.line(), t.path("cap"),
               "must be greater than or equal to backoff.base (" + format_duration(out.base) + ")");
  }
}

// A reference from one entry to another by name, checked once all names are known.
struct Reference {
  const toml::node* node;
  std::string path;
  std::string name;
};

// A reference to a pool that must hold a certain family of targets: backends for routes,
// accounts for `accounts`.
enum class PoolUse { backends, accounts };

struct PoolReference {
  const toml::node* node;
  std::string path;
  std::string name;
  PoolUse use;
};

constexpr std::array<std::pair<std::string_view, SourceKind>, 3> kSourceKinds{{
    {"generic", SourceKind::generic},
    {"wechat", SourceKind::wechat},
    {"wecom", SourceKind::wecom},
}};

constexpr std::array<std::pair<std::string_view, TargetKind>, 3> kTargetKinds{{
    {"http", TargetKind::http},
    {"wechat-oa", TargetKind::wechat_oa},
    {"wecom-kf", TargetKind::wecom_kf},
}};

template <typename Kind, std::size_t N>
std::optional<Kind> kind_named(const std::array<std::pair<std::string_view, Kind>, N>& names,
                               std::string_view s) {
  for (const auto& [name, kind] : names) {
    if (name == s) return kind;
  }
  return std::nullopt;
}

// Reports each present key of `keys` as not applying to this kind of entry.
void refuse_keys(Errors& errors, Table& t, std::initializer_list<std::string_view> keys,
                 std::string_view what) {
  for (auto key : keys) {
    if (const toml::node* n = t.node(key)) {
      errors.add(*n, t.path(key), "not a key of " + std::string(what));
    }
  }
}

void parse_aes_key(Errors& errors, Table& t, SourceConfig& s) {
  const toml::node* n = t.string("encoding_aes_key", s.encoding_aes_key, false, true);
  if (n == nullptr) return;
  std::string why;
  if (!wechat::AesKey::parse(s.encoding_aes_key, why)) {
    errors.add(*n, t.path("encoding_aes_key"), why);  // names the problem, never the key
    s.encoding_aes_key.clear();
  }
}

// WeChat and WeCom retry a callback not answered within 5 s.
constexpr DurationLimits kAckDeadlineLimits{false, std::chrono::milliseconds(4500),
                                            "WeChat gives up on a callback after 5s"};

void parse_sources(Errors& errors, const toml::table& root, std::vector<SourceConfig>& out,
                   std::vector<PoolReference>& pools) {
  Names names("source");
  std::map<std::string, std::uint32_t> corp_ids;
  auto list = entries(errors, root, "sources");
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (list[i] == nullptr) continue;
    const std::string prefix = indexed("sources", i);
    Table t(errors, *list[i], prefix,
            {"name", "kind", "secret", "route", "max_skew", "token", "encoding_aes_key", "app_id",
             "corp_id", "accounts", "answer_ding", "ack_deadline", "allow_plaintext",
             "decrypted_token"});
    SourceConfig s;
    std::string kind;
    if (const toml::node* n = t.string("kind", kind, false, false)) {
      if (auto k = kind_named(kSourceKinds, kind)) {
        s.kind = *k;
      } else if (kind == "slack") {
        errors.add(*n, t.path("kind"), "source kind 'slack' is not supported yet");
      } else {
        errors.add(*n, t.path("kind"),
                   "unknown source kind '" + kind + "' (expected generic, wechat or wecom)");
      }
    }
    const toml::node* name = t.string("name", s.name, s.kind != SourceKind::wecom, true);
    const toml::node* route = t.string("route", s.route, s.kind == SourceKind::generic, true);
    if (route != nullptr)
      pools.push_back(PoolReference{route, t.path("route"), s.route, PoolUse::backends});
    if (const toml::node* n = t.string("accounts", s.accounts, false, true)) {
      pools.push_back(PoolReference{n, t.path("accounts"), s.accounts, PoolUse::accounts});
    }
    t.duration("max_skew", s.max_skew);
    for (auto [key, flag] : {std::pair{"answer_ding", &s.answer_ding},
                             std::pair{"allow_plaintext", &s.allow_plaintext}}) {
      if (const toml::node* n = t.node(key)) {
        if (const auto* b = n->as_boolean()) {
          *flag = b->get();
        } else {
          errors.add(*n, t.path(key), "expected true or false");
        }
      }
    }
    switch (s.kind) {
      case SourceKind::generic:
        t.string("secret", s.secret, true, true);  // never echo the value
        refuse_keys(errors, t,
                    {"token", "encoding_aes_key", "app_id", "corp_id", "ack_deadline",
                     "allow_plaintext", "answer_ding", "decrypted_token"},
                    "a generic source");
        break;
      case SourceKind::wechat:
        t.string("token", s.token, true, true);
        parse_aes_key(errors, t, s);
        if (t.string("app_id", s.app_id, false, true) == nullptr &&
            t.node("encoding_aes_key") != nullptr) {
          errors.add(t.line(), t.path("app_id"),
                     "missing required key (safe mode checks the app id in every message)");
        }
        t.duration("ack_deadline", s.ack_deadline, kAckDeadlineLimits);
        refuse_keys(errors, t, {"secret", "corp_id", "decrypted_token"}, "a wechat source");
        break;
      case SourceKind::wecom:
        t.string("token", s.token, true, true);
        if (t.required("encoding_aes_key") != nullptr) parse_aes_key(errors, t, s);
        if (const toml::node* n = t.string("corp_id", s.corp_id, true, true)) {
          if (!std::all_of(s.corp_id.begin(), s.corp_id.end(), is_name_char)) {
            errors.add(*n, t.path("corp_id"), "invalid corp id (allowed: A-Z a-z 0-9 _ . -)");
          } else if (auto [it, fresh] = corp_ids.emplace(s.corp_id, line_of(*n)); !fresh) {
            errors.add(*n, t.path("corp_id"),
                       "duplicate corp id (first on line " + std::to_string(it->second) + ")");
          } else if (name == nullptr) {
            // Named by its corp id; a corp id refused above is not checked again as a name.
            s.name = s.corp_id;
          }
        }
        t.duration("ack_deadline", s.ack_deadline, kAckDeadlineLimits);
        if (const toml::node* n = t.string("decrypted_token", s.decrypted_token, false, true)) {
          if (!valid_bearer_token(s.decrypted_token))
            errors.add(*n, t.path("decrypted_token"), std::string(kBearerTokenRule));
        }
        refuse_keys(errors, t, {"secret", "app_id", "allow_plaintext"}, "a wecom source");
        break;
    }
    if (!s.name.empty()) {
      const toml::node* n = name != nullptr ? name : t.node("corp_id");
      const std::string key = t.path(name != nullptr ? "name" : "corp_id");
      if (s.name == kApiSource || s.name == kProbeSource) {
        errors.add(*n, key,
                   "source name '" + s.name + "' is botgate's own (of " +
                       (s.name == kApiSource ? "POST /v1/messages" : "dingdong probes") + ")");
      } else {
        names.add(errors, *n, key, s.name);
      }
    }
    out.push_back(std::move(s));
  }
}

// What a rule's `type` can match: the Event::type of a WeChat or WeCom callback, which is its
// MsgType, or "event:<Event>" for an event push (transport/wechat_codec.cpp). device_* are
// the messages of WeChat's hardware platform, which come to an Official Account's URL too;
// file and miniprogrampage come with the same callback format to a Mini Program's or a
// WeCom app's customer-service URL.
constexpr std::string_view kMessageTypes[] = {
    "text", "image", "voice",           "video",       "shortvideo",   "location",
    "link", "file",  "miniprogrampage", "device_text", "device_event", "device_status"};
constexpr std::string_view kEventTypePrefix = "event:";

bool is_callback_type(std::string_view type) {
  if (type.starts_with(kEventTypePrefix)) {
    const std::string_view event = type.substr(kEventTypePrefix.size());
    return !event.empty() && is_visible_ascii(event);
  }
  return std::find(std::begin(kMessageTypes), std::end(kMessageTypes), type) !=
         std::end(kMessageTypes);
}

void parse_route_type(Errors& errors, Table& t, std::string& type) {
  const toml::node* n = t.string("type", type, false, true);
  if (n == nullptr || is_callback_type(type)) return;
  std::string expected;
  for (std::string_view name : kMessageTypes) expected += std::string(name) + ", ";
  errors.add(*n, t.path("type"),
             "unknown type '" + type + "' (expected " + expected +
                 "or event:<Event> such as event:subscribe)");
}

// [[routes]]: optional; each rule needs an action.
void parse_routes(Errors& errors, const toml::table& root, std::vector<RouteRule>& out,
                  std::vector<PoolReference>& pools, std::vector<Reference>& sources) {
  const toml::node* n = root.get("routes");
  if (n == nullptr) return;
  const auto* arr = n->as_array();
  if (arr == nullptr) {
    errors.add(*n, "routes", "expected an array of tables ([[routes]])");
    return;
  }
  for (std::size_t i = 0; i < arr->size(); ++i) {
    const toml::node& e = *arr->get(i);
    const std::string prefix = indexed("routes", i);
    const auto* tbl = e.as_table();
    if (tbl == nullptr) {
      errors.add(e, prefix, "expected a table");
      continue;
    }
    Table t(errors, *tbl, prefix, {"source", "type", "text", "text_regex", "reply", "pool"});
    RouteRule r;
    r.index = i;
    if (const toml::node* s = t.string("source", r.source, false, true)) {
      sources.push_back(Reference{s, t.path("source"), r.source});
    }
    parse_route_type(errors, t, r.type);
    std::string text;
    const toml::node* exact = t.string("text", text, false, false);
    if (exact != nullptr) r.text = text;
    std::string pattern;
    if (const toml::node* re = t.string("text_regex", pattern, false, true)) {
      if (exact != nullptr) {
        errors.add(*re, t.path("text_regex"), "give text or text_regex, not both");
      } else {
        try {
          r.text_regex = compile_text_regex(pattern);
        } catch (const std::regex_error& err) {
          errors.add(*re, t.path("text_regex"),
                     std::string("invalid regular expression: ") + err.what());
        }
      }
    }
    t.string("reply", r.reply, false, true);
    if (const toml::node* p = t.string("pool", r.pool, false, true)) {
      pools.push_back(PoolReference{p, t.path("pool"), r.pool, PoolUse::backends});
    }
    if (t.node("reply") == nullptr && t.node("pool") == nullptr) {
      errors.add(t.line(), prefix, "a rule needs a reply, a pool, or both");
    }
    out.push_back(std::move(r));
  }
}

void parse_outlier(Errors& errors, const toml::table& tbl, const std::string& prefix,
                   PoolConfig& p) {
  Table t(
      errors, tbl, prefix,
      {"consecutive_failures", "base_ejection_time", "max_ejection_time", "max_ejection_percent"});
  auto& o = p.outlier;
  t.integer("consecutive_failures", o.consecutive_failures, 1, 1000000);
  Duration base = o.base_ejection_time;
  Duration max = o.max_ejection_time;
  const bool base_ok = t.duration("base_ejection_time", base);
  const bool max_ok = t.duration("max_ejection_time", max);
  if (base_ok && max_ok && max < base) {
    const toml::node* n = t.node("max_ejection_time");
    if (n == nullptr) n = t.node("base_ejection_time");
    errors.add(
        n != nullptr ? line_of(*n) : t.line(), t.path("max_ejection_time"),
        "must be greater than or equal to base_ejection_time (" + format_duration(base) + ")");
  }
  o.base_ejection_time = base;
  o.max_ejection_time = max;
  t.integer("max_ejection_percent", o.max_ejection_percent, 0, 100);
}

// `members` gets the references to targets of each entry of `out`, in the same order.
void parse_pools(Errors& errors, const toml::table& root, std::vector<PoolConfig>& out,
                 Names& names, std::vector<std::vector<Reference>>& members) {
  auto list = entries(errors, root, "pools");
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (list[i] == nullptr) continue;
    const std::string prefix = indexed("pools", i);
    Table t(errors, *list[i], prefix, {"name", "policy", "targets", "outlier"});
    PoolConfig p;
    std::vector<Reference> listed;
    if (const toml::node* n = t.string("name", p.name, true, true)) {
      names.add(errors, *n, t.path("name"), p.name);
    }
    std::string policy;
    if (const toml::node* n = t.string("policy", policy, false, false)) {
      if (auto kind = parse_policy_kind(policy)) {
        p.policy = *kind;
      } else {
        errors.add(*n, t.path("policy"),
                   "unknown policy '" + policy +
                       "' (expected round-robin, weighted, least-inflight, sticky or failover)");
      }
    }
    if (const toml::node* n = t.required("targets")) {
      const std::string key = t.path("targets");
      if (const auto* arr = n->as_array()) {
        if (arr->empty()) errors.add(*n, key, "must name at least one target");
        std::map<std::string, std::uint32_t> seen;
        for (std::size_t j = 0; j < arr->size(); ++j) {
          const toml::node& e = *arr->get(j);
          const std::string ekey = indexed(key, j);
          const auto* s = e.as_string();
          if (s == nullptr) {
            errors.add(e, ekey, "expected a string");
            continue;
          }
          auto [it, inserted] = seen.emplace(s->get(), line_of(e));
          if (!inserted) {
            errors.add(e, ekey, "duplicate target '" + s->get() + "' in pool");
            continue;
          }
          p.targets.push_back(s->get());
          listed.push_back(Reference{&e, ekey, s->get()});
        }
      } else {
        errors.add(*n, key, "expected an array of strings");
      }
    }
    if (const toml::table* o = t.table("outlier")) parse_outlier(errors, *o, t.path("outlier"), p);
    out.push_back(std::move(p));
    members.push_back(std::move(listed));
  }
}

// A url as an error message may show it: without its query, which may carry a credential.
std::string shown_url(std::string_view url) {
  const auto query = url.find('?');
  if (query == std::string_view::npos) return std::string(url);
  return std::string(url.substr(0, query)) + "?...";
}

// http[s]://host[:port][/path]
void parse_url(Errors& errors, const toml::node& n, const std::string& key, TargetConfig& t) {
  std::string_view url = t.url;
  if (iequals_prefix(url, "https://")) {
    t.tls = true;
    url.remove_prefix(8);
  } else if (iequals_prefix(url, "http://")) {
    url.remove_prefix(7);
  } else {
    errors.add(n, key,
               "invalid url '" + shown_url(t.url) + "' (expected http[s]://host[:port][/path])");
    return;
  }
  auto slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "/" : url.substr(slash);
  if (authority.find('@') != std::string_view::npos) {
    // Not echoed: user:password@ is a credential.
    errors.add(n, key, "invalid url: user info (user:password@) is not allowed");
    return;
  }
  std::string_view host = authority;
  std::optional<std::uint32_t> port = t.tls ? 443 : 80;
  if (auto colon = authority.find(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = parse_port(authority.substr(colon + 1));
  }
  const std::string bad = "invalid url '" + shown_url(t.url) + "': ";
  if (host.empty()) {
    errors.add(n, key, bad + "missing host");
    return;
  }
  if (!(host == "localhost" || is_ipv4(host) || is_hostname(host))) {
    errors.add(n, key, bad + "host must be an IPv4 address, localhost or a host name");
    return;
  }
  if (!port || *port == 0) {
    errors.add(n, key, bad + "port must be between 1 and 65535");
    return;
  }
  if (std::any_of(path.begin(), path.end(), [](char c) {
        return c == '#' || static_cast<unsigned char>(c) <= 0x20 || c == 0x7f;
      })) {
    errors.add(n, key, bad + "path must not contain spaces, control characters or a fragment");
    return;
  }
  t.host = std::string(host);
  t.port = static_cast<std::uint16_t>(*port);
  t.path = std::string(path);
}

// The keys of a [targets.probe] table: its kind, then the settings of a check.
constexpr std::array<std::string_view, 9> kProbeKeys = {
    "kind", "path", "interval", "timeout", "jitter", "rise", "fall", "peer", "source"};

// Settings of a probe of kind none configure a check that never runs: the kind is missing.
void require_probe_kind(Errors& errors, Table& t, ProbeKind kind) {
  if (kind != ProbeKind::none) return;
  for (std::string_view key : std::span(kProbeKeys).subspan(1)) {
    if (t.node(key) == nullptr) continue;
    const toml::node* n = t.node("kind");
    errors.add(n != nullptr ? line_of(*n) : t.line(), t.path("kind"),
               "a probe that sets " + std::string(key) +
                   " needs a kind (http or dingdong): of kind none, it never runs");
    return;
  }
}

void parse_probe(Errors& errors, const toml::table& tbl, const std::string& prefix, ProbeOptions& p,
                 std::vector<Reference>& sources) {
  Table t(errors, tbl, prefix, kProbeKeys);
  std::string kind;
  if (const toml::node* n = t.string("kind", kind, false, false)) {
    if (auto k = parse_probe_kind(kind)) {
      p.kind = *k;
      require_probe_kind(errors, t, p.kind);
    } else {
      errors.add(*n, t.path("kind"),
                 "unknown probe kind '" + kind + "' (expected none, http or dingdong)");
    }
  } else if (t.node("kind") == nullptr) {
    require_probe_kind(errors, t, p.kind);
  }
  if (const toml::node* n = t.string("path", p.path, false, true)) {
    if (p.path.front() != '/' || std::any_of(p.path.begin(), p.path.end(), [](char c) {
          return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == '#';
        })) {
      errors.add(*n, t.path("path"),
                 "must start with '/' and hold no spaces, control characters or fragment");
    }
  }
  // A probe is a request (or a message) every interval: not a busy loop.
  const bool interval_ok =
      t.duration("interval", p.interval, {.min = std::chrono::milliseconds(100)});
  if (const toml::node* n = t.node("timeout")) {
    const bool timeout_ok =
        t.duration("timeout", p.timeout, {.min = std::chrono::milliseconds(10)});
    if (interval_ok && timeout_ok && p.timeout > p.interval) {
      errors.add(*n, t.path("timeout"),
                 "must not be longer than probe.interval (" + format_duration(p.interval) + ")");
    }
  } else {
    // The default timeout fits a short interval rather than making it an error.
    p.timeout = std::min(p.timeout, p.interval);
  }
  t.number("jitter", p.jitter, 0, 0.5);
  t.integer("rise", p.thresholds.rise, 1, 1000);
  t.integer("fall", p.thresholds.fall, 1, 1000);
  const toml::node* peer = t.string("peer", p.peer, false, true);
  const toml::node* source = t.string("source", p.source, false, true);
  if (p.kind == ProbeKind::dingdong) {
    if (peer == nullptr) t.required("peer");
    if (source == nullptr) {
      t.required("source");
    } else {
      sources.push_back(Reference{source, t.path("source"), p.source});
    }
  } else if (p.kind == ProbeKind::http && (peer != nullptr || source != nullptr)) {
    const toml::node* n = peer != nullptr ? peer : source;
    errors.add(*n, t.path(peer != nullptr ? "peer" : "source"),
               "only a dingdong probe takes a peer and a source");
  }
}

// Accounts with the same credentials share one access token, fetched and refreshed once: its
// token_margin and token_min_life must then be one setting, not whichever account came first.
struct Located {
  const toml::table* table;
  std::string path;  // targets[i]
};

void same_token_settings(Errors& errors, const std::vector<TargetConfig>& targets,
                         const std::vector<Located>& located) {
  std::map<std::string, std::size_t> first;  // credential key -> index of its first account
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const TargetConfig& t = targets[i];
    if (!is_account(t.kind)) continue;
    const auto [it, fresh] = first.try_emplace(credential_key(t), i);
    if (fresh) continue;
    const TargetConfig& f = targets[it->second];
    for (const auto& [key, mine, theirs] :
         {std::tuple{"token_margin", t.token_margin, f.token_margin},
          std::tuple{"token_min_life", t.token_min_life, f.token_min_life}}) {
      if (mine == theirs) continue;
      const toml::node* n = located[i].table->get(key);
      errors.add(n != nullptr ? *n : static_cast<const toml::node&>(*located[i].table),
                 located[i].path + "." + key,
                 std::string(key) + " " + format_duration(mine) + " differs from target '" +
                     f.name + "' (" + format_duration(theirs) +
                     "), which has the same credentials and so shares its access token");
    }
  }
}

void parse_targets(Errors& errors, const toml::table& root, std::vector<TargetConfig>& out,
                   Names& names, std::vector<Reference>& probe_sources) {
  auto list = entries(errors, root, "targets");
  std::vector<Located> located;  // of each target in out
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (list[i] == nullptr) continue;
    const std::string prefix = indexed("targets", i);
    Table t(errors, *list[i], prefix,
            {"name",
             "kind",
             "url",
             "weight",
             "connect_timeout",
             "timeout",
             "max_connections",
             "pipeline",
             "max_in_flight",
             "rate_limit",
             "burst",
             "probe",
             "api_base",
             "app_id",
             "app_secret",
             "corp_id",
             "corp_secret",
             "open_kfid",
             "token_margin",
             "token_min_life"});
    TargetConfig c;
    if (const toml::node* n = t.string("name", c.name, true, true)) {
      names.add(errors, *n, t.path("name"), c.name);
    }
    std::string kind;
    if (const toml::node* n = t.string("kind", kind, false, false)) {
      if (auto k = kind_named(kTargetKinds, kind)) {
        c.kind = *k;
      } else if (kind == "slack") {
        errors.add(*n, t.path("kind"), "target kind 'slack' is not supported yet");
      } else {
        errors.add(*n, t.path("kind"),
                   "unknown target kind '" + kind + "' (expected http, wechat-oa or wecom-kf)");
      }
    }
    switch (c.kind) {
      case TargetKind::http:
        if (const toml::node* n = t.string("url", c.url, true, true)) {
          parse_url(errors, *n, t.path("url"), c);
        }
        refuse_keys(errors, t,
                    {"api_base", "app_id", "app_secret", "corp_id", "corp_secret", "open_kfid",
                     "token_margin", "token_min_life"},
                    "an http target");
        break;
      case TargetKind::wechat_oa:
      case TargetKind::wecom_kf: {
        const bool oa = c.kind == TargetKind::wechat_oa;
        c.url = oa ? std::string(kOfficialAccountApi) : std::string(kWecomApi);
        const toml::node* base = t.string("api_base", c.url, false, true);
        parse_url(errors, base != nullptr ? *base : *list[i], t.path("api_base"), c);
        while (!c.path.empty() && c.path.back() == '/') c.path.pop_back();
        if (c.path.find('?') != std::string::npos) {
          // The API paths go after the base: a query there would swallow them.
          errors.add(base != nullptr ? *base : *list[i], t.path("api_base"),
                     "api_base must not have a query (?...)");
        }
        if (oa) {
          t.string("app_id", c.app_id, true, true);
          t.string("app_secret", c.app_secret, true, true);  // never echo the value
          refuse_keys(errors, t, {"corp_id", "corp_secret", "open_kfid"}, "a wechat-oa target");
        } else {
          t.string("corp_id", c.corp_id, true, true);
          t.string("corp_secret", c.corp_secret, true, true);
          t.string("open_kfid", c.open_kfid, true, true);
          refuse_keys(errors, t, {"app_id", "app_secret"}, "a wecom-kf target");
        }
        t.duration("token_margin", c.token_margin);
        t.duration("token_min_life", c.token_min_life);
        refuse_keys(errors, t, {"url"}, "an account target (it has api_base)");
        break;
      }
    }
    t.integer("weight", c.weight, 1, std::numeric_limits<std::uint32_t>::max());
    t.duration("connect_timeout", c.connect_timeout);
    t.duration("timeout", c.timeout);
    t.integer("max_connections", c.max_connections, 1, 1024);
    t.integer("pipeline", c.pipeline, 1, 128);
    // More in flight than the connections carry would queue inside the HTTP client, where the
    // router's deadline runs while nothing is sent: at most max_connections * pipeline.
    const std::uint32_t carried = c.max_connections * c.pipeline;
    t.integer("max_in_flight", c.max_in_flight, 0, std::numeric_limits<std::uint32_t>::max());
    if (c.max_in_flight > carried) {
      errors.add(*t.node("max_in_flight"), t.path("max_in_flight"),
                 "must not exceed max_connections * pipeline (" + std::to_string(carried) + ")");
    }
    if (c.max_in_flight == 0) c.max_in_flight = carried;
    t.number("rate_limit", c.rate_limit, 0, 1e9);
    t.number("burst", c.burst, 0, 1e9);
    if (c.burst == 0) c.burst = default_burst(c.rate_limit);
    if (const toml::table* p = t.table("probe")) {
      parse_probe(errors, *p, t.path("probe"), c.probe, probe_sources);
      if (is_account(c.kind) && c.probe.kind == ProbeKind::http) {
        errors.add(*p, t.path("probe") + ".kind",
                   "an account target is probed by dingdong (or none), not http");
      }
    }
    out.push_back(std::move(c));
    located.push_back(Located{list[i], prefix});
  }
  same_token_settings(errors, out, located);
}

// References between entries, collected while parsing and checked once every name is known.
struct References {
  std::vector<PoolReference> pools;             // sources[].route and .accounts, routes[].pool
  std::vector<Reference> rule_sources;          // routes[].source
  std::vector<std::vector<Reference>> members;  // pools[i].targets, one list per pool
  std::vector<Reference> probe_sources;         // targets[].probe.source
};

// The entry of `list` named `name`, or nullptr.
template <typename Entry>
const Entry* find_named(const std::vector<Entry>& list, std::string_view name) {
  const auto it =
      std::find_if(list.begin(), list.end(), [&](const Entry& e) { return e.name == name; });
  return it == list.end() ? nullptr : &*it;
}

// A pool holds either http targets or account targets: the ones take events, the others send
// messages, and no use of a pool takes both. Reports each mixed pool at its first member of the
// other family than its first member's; returns the names of the mixed pools.
std::set<std::string> check_pool_families(Errors& errors, const Config& cfg,
                                          const std::vector<std::vector<Reference>>& members) {
  std::set<std::string> mixed;
  for (std::size_t i = 0; i < cfg.pools.size(); ++i) {
    const TargetConfig* first = nullptr;
    for (const Reference& m : members[i]) {
      const TargetConfig* t = find_named(cfg.targets, m.name);
      if (t == nullptr) continue;
      if (first == nullptr) first = t;
      if (is_account(t->kind) == is_account(first->kind)) continue;
      errors.add(*m.node, m.path,
                 "pool '" + cfg.pools[i].name + "' holds " + std::string(to_string(first->kind)) +
                     " target '" + first->name + "' and " + std::string(to_string(t->kind)) +
                     " target '" + t->name +
                     "': a pool holds either http targets or account targets (wechat-oa, "
                     "wecom-kf)");
      mixed.insert(cfg.pools[i].name);
      break;
    }
  }
  return mixed;
}

// Each reference to a pool must name one whose targets fit its use. A mixed pool fits no use
// and is reported on its own.
void check_pool_references(Errors& errors, const Config& cfg,
                           const std::vector<PoolReference>& refs,
                           const std::set<std::string>& mixed) {
  for (const auto& r : refs) {
    const PoolConfig* pool = find_named(cfg.pools, r.name);
    if (pool == nullptr) {
      errors.add(*r.node, r.path, "unknown pool '" + r.name + "'");
      continue;
    }
    if (mixed.count(r.name) != 0) continue;
    const bool want_accounts = r.use == PoolUse::accounts;
    for (const auto& member : pool->targets) {
      const TargetConfig* t = find_named(cfg.targets, member);
      if (t == nullptr || is_account(t->kind) == want_accounts) continue;
      errors.add(*r.node, r.path,
                 "pool '" + r.name + "' holds " + std::string(to_string(t->kind)) + " target '" +
                     member + "', but " +
                     (want_accounts ? "replies go through account targets (wechat-oa, wecom-kf)"
                                    : "events are forwarded to http targets"));
      break;
    }
  }
}

// The source a reference names; an unknown name is reported.
const SourceConfig* referenced_source(Errors& errors, const Reference& r,
                                      const std::vector<SourceConfig>& sources) {
  const SourceConfig* s = find_named(sources, r.name);
  if (s == nullptr) errors.add(*r.node, r.path, "unknown source '" + r.name + "'");
  return s;
}

void check_references(Errors& errors, const Config& cfg, const References& refs) {
  check_pool_references(errors, cfg, refs.pools, check_pool_families(errors, cfg, refs.members));
  for (const auto& r : refs.rule_sources) {
    const SourceConfig* s = referenced_source(errors, r, cfg.sources);
    if (s != nullptr && s->kind == SourceKind::generic) {
      // Rules see callbacks only: a generic source's events always go to its route.
      errors.add(*r.node, r.path,
                 "'" + r.name +
                     "' is a generic source: rules apply to wechat and wecom sources only, and "
                     "its events always go to its route");
    }
  }
  for (const auto& list : refs.members) {
    for (const auto& m : list) {
      // A target whose name is invalid is reported there, not again where it is referenced.
      if (find_named(cfg.targets, m.name) == nullptr) {
        errors.add(*m.node, m.path, "unknown target '" + m.name + "'");
      }
    }
  }
  for (const auto& r : refs.probe_sources) referenced_source(errors, r, cfg.sources);
}

// The document, or nothing when the text is not TOML (reported, as the only error of the file:
// nothing after a syntax error can be read).
std::optional<toml::table> parse_toml(Errors& errors, std::string_view text,
                                      std::string_view source_name) {
  if (auto deep = refuse_deep_keys(text)) {
    errors.add(deep->line, std::move(deep->key), std::move(deep->message));
    return std::nullopt;
  }
#if TOML_EXCEPTIONS
  try {
    return toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    errors.add(e.source().begin.line, "", std::string(e.description()));
    return std::nullopt;
  }
#else
  auto parsed = toml::parse(text, source_name);
  if (!parsed) {
    const auto& e = parsed.error();
    errors.add(e.source().begin.line, "", std::string(e.description()));
    return std::nullopt;
  }
  return std::move(parsed).table();
#endif
}

void parse_document(Errors& errors, const toml::table& root, Config& cfg) {
  Table top(
      errors, root, "",
      {"server", "log", "actors", "queue", "backoff", "sources", "routes", "pools", "targets"});
  parse_server(errors, root, cfg.server);
  parse_log(errors, root, cfg.log);
  parse_actors(errors, root, cfg.actors);
  parse_queue(errors, root, cfg.queue);
  parse_backoff(errors, root, cfg.backoff);

  References refs;
  Names pool_names("pool");
  Names target_names("target");
  parse_sources(errors, root, cfg.sources, refs.pools);
  parse_routes(errors, root, cfg.routes, refs.pools, refs.rule_sources);
  parse_pools(errors, root, cfg.pools, pool_names, refs.members);
  parse_targets(errors, root, cfg.targets, target_names, refs.probe_sources);
  check_references(errors, cfg, refs);
}

// BOTGATE_ADMIN_TOKEN, when set and non-empty, replaces server.admin_token.
void apply_env_admin_token(Errors& errors, const char* token, ServerConfig& server) {
  if (token == nullptr || token[0] == '\0') return;
  if (!valid_bearer_token(token)) {
    errors.add(0, "BOTGATE_ADMIN_TOKEN", std::string(kBearerTokenRule));  // never echoed
    return;
  }
  server.admin_token = token;
}

// A config is a few KiB. The cap keeps a path naming /dev/zero, a FIFO or a huge file by
// mistake from being read until memory runs out.
constexpr std::size_t kMaxConfigBytes = 4 * kMiB;
constexpr std::string_view kMaxConfigText = "4MiB";

ConfigError read_error(int err) {
  return ConfigError{0, "", std::string("cannot read config file: ") + std::strerror(err)};
}

// Reads the whole file into `text`, or returns why it cannot.
std::optional<ConfigError> read_config_file(const std::string& path, std::string& text) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return read_error(errno);
  char buf[8192];
  std::size_t n = 0;
  do {
    n = std::fread(buf, 1, sizeof buf, f);
    text.append(buf, n);
  } while (n == sizeof buf && text.size() <= kMaxConfigBytes);
  const bool failed = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  if (failed) return read_error(err);
  if (text.size() > kMaxConfigBytes) {
    return ConfigError{
        0, "",
        "config file larger than " + std::string(kMaxConfigText) + " (the most botgate reads)"};
  }
  return std::nullopt;
}

}  // namespace

std::string_view to_string(SourceKind kind) noexcept {
  for (const auto& [name, k] : kSourceKinds) {
    if (k == kind) return name;
  }
  return "unknown";
}

std::string_view to_string(TargetKind kind) noexcept {
  for (const auto& [name, k] : kTargetKinds) {
    if (k == kind) return name;
  }
  return "unknown";
}

std::string credential_key(const TargetConfig& t) {
  const bool oa = t.kind == TargetKind::wechat_oa;
  // The parsed api_base, not its text: "http://h:80/" and "http://h" are one platform.
  return std::string(to_string(t.kind)) + '\n' + (t.tls ? "https" : "http") + '\n' + t.host + '\n' +
         std::to_string(t.port) + '\n' + t.path + '\n' + (oa ? t.app_id : t.corp_id) + '\n' +
         (oa ? t.app_secret : t.corp_secret);
}

ConfigResult parse_config(std::string_view toml_text, std::string_view source_name,
                          const char* env_admin_token) {
  Errors errors;
  Config cfg;
  if (auto root = parse_toml(errors, toml_text, source_name)) parse_document(errors, *root, cfg);
  // Checked even when the file is not TOML: every problem is reported in one go.
  apply_env_admin_token(errors, env_admin_token, cfg.server);
  if (!errors.empty()) return errors.take();
  return cfg;
}

ConfigResult load_config(const std::string& path) {
  std::string text;
  if (auto error = read_config_file(path, text)) return std::vector<ConfigError>{std::move(*error)};
  auto result = parse_config(text, path, std::getenv("BOTGATE_ADMIN_TOKEN"));
  if (auto* cfg = std::get_if<Config>(&result)) {
    const std::filesystem::path dir(cfg->queue.dir);
    if (dir.is_relative()) {
      cfg->queue.dir = (std::filesystem::absolute(path).parent_path() / dir).lexically_normal();
    }
  }
  return result;
}

std::string format_error(const std::string& file, const ConfigError& e) {
  std::string out = file;
  if (e.line != 0) out += ":" + std::to_string(e.line);
  out += ": ";
  if (!e.key.empty()) out += e.key + ": ";
  out += e.message;
  return out;
}

}  // namespace botgate
