// How a target is health-checked (`[targets.probe]`), as plain data: the config fills it, the
// prober actor (prober_actor.hpp) runs it.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "core/units.hpp"
#include "policies/health.hpp"

namespace botgate {

// none: never probed (passive outlier detection still applies). http: GET `path`, 2xx is
// healthy. dingdong: send "ding <nonce>" through the target to `peer`, healthy when "dong
// <nonce>" comes back in through source `source` within the timeout.
enum class ProbeKind { none, http, dingdong };

inline constexpr std::array<std::pair<std::string_view, ProbeKind>, 3> kProbeKindNames{{
    {"none", ProbeKind::none},
    {"http", ProbeKind::http},
    {"dingdong", ProbeKind::dingdong},
}};

constexpr std::optional<ProbeKind> parse_probe_kind(std::string_view s) noexcept {
  for (const auto& [name, kind] : kProbeKindNames) {
    if (name == s) return kind;
  }
  return std::nullopt;
}

constexpr std::string_view to_string(ProbeKind kind) noexcept {
  for (const auto& [name, k] : kProbeKindNames) {
    if (k == kind) return name;
  }
  return "unknown";
}

struct ProbeOptions {
  ProbeKind kind = ProbeKind::none;
  std::string path = "/healthz";  // http
  Duration interval = std::chrono::seconds(5);
  Duration timeout = std::chrono::seconds(2);  // at most interval (left out: min(2s, interval))
  double jitter = 0.1;                         // each wait is interval * (1 + U[-jitter, +jitter])
  HealthThresholds thresholds;
  std::string peer;    // dingdong: the conversation the ding is sent to
  std::string source;  // dingdong: the source the dong arrives on
};

}  // namespace botgate
