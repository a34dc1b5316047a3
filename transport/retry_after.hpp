#pragma once

#include <chrono>
#include <string_view>

namespace botgate::http {

// The wait a Retry-After header value asks for (RFC 9110 §10.2.3): delta-seconds, or an
// HTTP-date in any of the three formats a recipient must accept (IMF-fixdate, RFC 850,
// asctime), counted from `now`. A date in the past, or a value that is neither, is no wait
// (0). At most a day: a peer does not park a delivery for longer than that.
std::chrono::seconds parse_retry_after(std::string_view value,
                                       std::chrono::system_clock::time_point now);

}  // namespace botgate::http
