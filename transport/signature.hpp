// HMAC-SHA256 signatures and constant-time comparison, shared by every codec that
// signs or verifies (and by the test client and load generator that sign).
#pragma once

#include <string>
#include <string_view>

namespace botgate {

// Lower-case hex of HMAC-SHA256(key, message).
std::string hmac_sha256_hex(std::string_view key, std::string_view message);

// The generic-event signature header value: "v1=" + hex HMAC(secret, ts + "." + body).
std::string generic_signature(std::string_view secret, std::string_view timestamp,
                              std::string_view body);

// Compares in time that depends only on the lengths, never on where bytes differ.
bool constant_time_equal(std::string_view a, std::string_view b) noexcept;

}  // namespace botgate
