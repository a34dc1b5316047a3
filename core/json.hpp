// Minimal JSON output helpers (escaping) for responses and log lines.
#pragma once

#include <string>
#include <string_view>

namespace botgate {

// Appends `s` as a quoted, escaped JSON string.
void append_json_string(std::string& out, std::string_view s);

}  // namespace botgate
