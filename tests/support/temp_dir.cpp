#include "tests/support/temp_dir.hpp"

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include "tests/support/failure.hpp"

namespace botgate::test {

TempDir::TempDir(const std::string& prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/" + prefix + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(), "mkdtemp " + tmpl);
  }
  path_ = buf.data();
}

TempDir::~TempDir() {
  if (current_test_failed()) {
    std::cerr << "[botgate-it] test failed: keeping " << path_.string() << "\n";
    return;
  }
  if (const char* keep = std::getenv("BOTGATE_IT_KEEP"); keep && *keep && *keep != '0') {
    std::cerr << "[botgate-it] BOTGATE_IT_KEEP: keeping " << path_.string() << "\n";
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::filesystem::path TempDir::write(const std::string& name, const std::string& text) const {
  auto p = path_ / name;
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write " + p.string());
  out << text;
  out.close();
  if (!out) throw std::runtime_error("cannot write " + p.string());
  return p;
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return {};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}
}  // namespace

std::string make_config(const GatewayOptions& o) {
  std::ostringstream t;
  t << "[server]\n"
    << "listen = \"127.0.0.1:" << o.listen_port << "\"\n"
    << "io_threads = " << o.io_threads << "\n"
    << "admin_token = " << quoted(o.admin_token) << "\n"
    << "max_body = " << quoted(o.max_body) << "\n"
    << "max_header = " << quoted(o.max_header) << "\n"
    << "drain_timeout = " << quoted(o.drain_timeout) << "\n";
  if (!o.read_timeout.empty()) t << "read_timeout = " << quoted(o.read_timeout) << "\n";
  if (!o.write_timeout.empty()) t << "write_timeout = " << quoted(o.write_timeout) << "\n";
  t << "\n[log]\n"
    << "level = " << quoted(o.log_level) << "\n"
    << "format = " << quoted(o.log_format) << "\n"
    << "\n[actors]\n"
    << "threads = " << o.actor_threads << "\n"
    << "\n[queue]\n"
    << "shards = " << o.shards << "\n"
    << "max_pending = " << o.max_pending << "\n"
    << "max_attempts = " << o.max_attempts << "\n"
    << "max_age = " << quoted(o.max_age) << "\n";
  if (!o.queue_dir.empty()) t << "dir = " << quoted(o.queue_dir) << "\n";
  if (!o.fsync.empty()) t << "fsync = " << quoted(o.fsync) << "\n";
  if (!o.dedup_window.empty()) t << "dedup_window = " << quoted(o.dedup_window) << "\n";
  if (o.memory_window > 0) t << "memory_window = " << o.memory_window << "\n";
  if (!o.segment_bytes.empty()) t << "segment_bytes = " << quoted(o.segment_bytes) << "\n";
  if (!o.min_free.empty()) t << "min_free = " << quoted(o.min_free) << "\n";
  t << "\n[backoff]\n"
    << "base = " << quoted(o.backoff_base) << "\n"
    << "cap = " << quoted(o.backoff_cap) << "\n"
    << "\n[[sources]]\n"
    << "name = " << quoted(o.source) << "\n"
    << "kind = \"generic\"\n"
    << "secret = " << quoted(o.secret) << "\n"
    << "route = " << quoted(o.pool) << "\n"
    << "\n[[pools]]\n"
    << "name = " << quoted(o.pool) << "\n"
    << "policy = \"round-robin\"\n"
    << "targets = [";
  for (std::size_t i = 0; i < o.backend_ports.size(); ++i) {
    if (i) t << ", ";
    t << quoted("b" + std::to_string(i + 1));
  }
  t << "]\n";
  for (std::size_t i = 0; i < o.backend_ports.size(); ++i) {
    t << "\n[[targets]]\n"
      << "name = " << quoted("b" + std::to_string(i + 1)) << "\n"
      << "kind = \"http\"\n"
      << "url = "
      << quoted("http://127.0.0.1:" + std::to_string(o.backend_ports[i]) + o.backend_path) << "\n"
      << "weight = 1\n"
      << "connect_timeout = " << quoted(o.connect_timeout) << "\n"
      << "timeout = " << quoted(o.target_timeout) << "\n"
      << "max_connections = " << o.max_connections << "\n";
  }
  if (!o.extra.empty()) t << "\n" << o.extra << "\n";
  return t.str();
}

}  // namespace botgate::test
