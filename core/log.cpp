#include "core/log.hpp"

#include <fmt/chrono.h>
#include <unistd.h>

#include <atomic>
#include <chrono>

#include "core/json.hpp"

namespace botgate::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::info)};
std::atomic<int> g_format{static_cast<int>(Format::logfmt)};

constexpr std::string_view level_name(Level l) {
  switch (l) {
    case Level::debug:
      return "debug";
    case Level::info:
      return "info";
    case Level::warn:
      return "warn";
    case Level::error:
      return "error";
  }
  return "info";
}

bool needs_quotes(std::string_view s) {
  if (s.empty()) return true;
  for (unsigned char c : s) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f) return true;
  }
  return false;
}

void append_logfmt_value(std::string& out, std::string_view s) {
  if (needs_quotes(s)) {
    append_json_string(out, s);
  } else {
    out.append(s);
  }
}

std::string timestamp() {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03d}Z", std::chrono::floor<std::chrono::seconds>(now),
                     ms.count());
}

}  // namespace

std::optional<Level> parse_level(std::string_view s) {
  for (auto l : {Level::debug, Level::info, Level::warn, Level::error}) {
    if (s == level_name(l)) return l;
  }
  return std::nullopt;
}

std::optional<Format> parse_format(std::string_view s) {
  if (s == "logfmt") return Format::logfmt;
  if (s == "json") return Format::json;
  return std::nullopt;
}

void configure(Level level, Format format) {
  g_level.store(static_cast<int>(level), std::memory_order_relaxed);
  g_format.store(static_cast<int>(format), std::memory_order_relaxed);
}

bool enabled(Level level) {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

std::string render(Format format, Level level, std::string_view msg,
                   std::span<const Field> fields) {
  std::string line;
  line.reserve(128);
  if (format == Format::json) {
    line += "{\"ts\":";
    append_json_string(line, timestamp());
    line += ",\"level\":";
    append_json_string(line, level_name(level));
    line += ",\"msg\":";
    append_json_string(line, msg);
    for (const auto& f : fields) {
      line.push_back(',');
      append_json_string(line, f.key);
      line.push_back(':');
      if (f.number)
        line += f.value;
      else
        append_json_string(line, f.value);
    }
    line += "}\n";
  } else {
    line += "ts=";
    line += timestamp();
    line += " level=";
    line += level_name(level);
    line += " msg=";
    append_logfmt_value(line, msg);
    for (const auto& f : fields) {
      line.push_back(' ');
      line.append(f.key);
      line.push_back('=');
      append_logfmt_value(line, f.value);
    }
    line.push_back('\n');
  }
  return line;
}

void write(Level level, std::string_view msg, std::span<const Field> fields) {
  auto line =
      render(static_cast<Format>(g_format.load(std::memory_order_relaxed)), level, msg, fields);
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    auto n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) return;
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

}  // namespace botgate::log
