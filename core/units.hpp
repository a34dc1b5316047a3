// Parsing of human-written durations ("250ms", "2s", "1h30m") and sizes ("1MiB").
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace botgate {

using Duration = std::chrono::nanoseconds;

// Accepts one or more <integer><unit> groups, unit in ns|us|ms|s|m|h|d. Rejects
// empty strings, missing units, negative values and overflow.
std::optional<Duration> parse_duration(std::string_view text);

// Accepts <integer>[B|KiB|MiB|GiB|KB|MB|GB]. A bare integer is bytes.
std::optional<std::uint64_t> parse_size(std::string_view text);

// "250ms", "2s", "48h", "365d": the shortest exact spelling (days only from a week on), for logs
// and docs.
std::string format_duration(Duration d);

}  // namespace botgate
