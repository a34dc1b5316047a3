// The generic signed-JSON platform codec: verifies X-Botgate-Signature and parses
// the body into an Event with simdjson On Demand (one reused parser per thread).
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "core/event.hpp"
#include "core/units.hpp"

namespace botgate {

enum class CodecStatus { ok, bad_signature, stale_timestamp, malformed, missing_field };

const char* to_string(CodecStatus s);

// Longest id or conversation accepted; longer ones are malformed.
inline constexpr std::size_t kMaxKeyLength = 256;

// Checks the timestamp window first (cheap), then the HMAC in constant time.
CodecStatus verify_generic(std::string_view secret, std::string_view timestamp_header,
                           std::string_view signature_header, std::string_view body,
                           std::chrono::system_clock::time_point now, Duration max_skew);

// Parses `body` (taken by value: it becomes Event::raw without a copy). The whole
// document is validated, including UTF-8 and trailing content, not just the fields
// read. On failure `detail` says why, in words safe to log.
CodecStatus parse_generic_event(std::string body, Event& out, std::string& detail);

}  // namespace botgate
