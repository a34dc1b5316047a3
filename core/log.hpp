// Structured one-line logs (logfmt or JSON) on stderr. Callers pass fields; never
// pass a secret, a signature or a token as a field value.
#pragma once

#include <fmt/format.h>

#include <cmath>
#include <concepts>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace botgate::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };
enum class Format { logfmt, json };

std::optional<Level> parse_level(std::string_view s);
std::optional<Format> parse_format(std::string_view s);

void configure(Level level, Format format);
bool enabled(Level level);

struct Field {
  std::string_view key;
  std::string value;
  bool number = false;  // JSON writes it bare: a number (or true/false), not a string
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(v) {}
  Field(std::string_view k, const std::string& v) : key(k), value(v) {}
  template <typename T>
  requires std::integral<T> || std::floating_point<T> Field(std::string_view k, T v)
      : key(k), value(fmt::to_string(v)), number(std::integral<T> || std::isfinite(v)) {}
};

// Formats the whole line first and emits it with a single write(2), so lines from
// different threads never interleave and no lock is taken.
void write(Level level, std::string_view msg, std::span<const Field> fields);
inline void write(Level level, std::string_view msg, std::initializer_list<Field> fields = {}) {
  write(level, msg, std::span(fields.begin(), fields.size()));
}

inline void debug(std::string_view m, std::initializer_list<Field> f = {}) {
  if (enabled(Level::debug)) write(Level::debug, m, f);
}
inline void info(std::string_view m, std::initializer_list<Field> f = {}) {
  if (enabled(Level::info)) write(Level::info, m, f);
}
inline void warn(std::string_view m, std::initializer_list<Field> f = {}) {
  if (enabled(Level::warn)) write(Level::warn, m, f);
}
inline void error(std::string_view m, std::initializer_list<Field> f = {}) {
  if (enabled(Level::error)) write(Level::error, m, f);
}

// Exposed for tests: renders a line without writing it.
std::string render(Format format, Level level, std::string_view msg, std::span<const Field> fields);
inline std::string render(Format format, Level level, std::string_view msg,
                          std::initializer_list<Field> fields) {
  return render(format, level, msg, std::span(fields.begin(), fields.size()));
}

}  // namespace botgate::log
