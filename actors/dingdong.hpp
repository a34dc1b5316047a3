// The dingdong health check's two halves meet here. A prober sends "ding <nonce>" through its
// target and registers the nonce; the HTTP side hands every inbound event of a watched source
// to claim(), which recognises "dong <nonce>", tells the waiting prober, and keeps the event out
// of the queue. A nonce is answered once: a repeated or late dong finds nothing and is stale.
#pragma once

#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "actors/messages.hpp"

namespace botgate {

inline constexpr std::string_view kDingPrefix = "ding ";
inline constexpr std::string_view kDongPrefix = "dong ";
inline constexpr std::string_view kProbeSource = "botgate-probe";  // X-Botgate-Source of a ding

class DingRegistry {
 public:
  enum class Claim { none, answered, stale };

  // `sources`: where dongs may arrive (the probes' `source` keys). Fixed for the registry's life.
  explicit DingRegistry(std::vector<std::string> sources) : sources_(std::move(sources)) {}

  void expect(const std::string& nonce, prober_actor prober) {
    std::lock_guard lock(mutex_);
    pending_[nonce] = std::move(prober);
  }

  void forget(const std::string& nonce) {
    std::lock_guard lock(mutex_);
    pending_.erase(nonce);
  }

  // none: not a dong (the event goes on as usual). answered: a prober was waiting for it.
  // stale: a dong nobody waits for. Either of the last two is consumed, never queued.
  Claim claim(const Event& ev) {
    if (!watches(ev.source) || !ev.text.starts_with(kDongPrefix)) return Claim::none;
    const std::string nonce = ev.text.substr(kDongPrefix.size());
    prober_actor prober;
    {
      std::lock_guard lock(mutex_);
      auto it = pending_.find(nonce);
      if (it == pending_.end()) return Claim::stale;
      prober = std::move(it->second);
      pending_.erase(it);
    }
    caf::anon_send(prober, dong_atom::value, nonce);
    return Claim::answered;
  }

  bool watches(std::string_view source) const noexcept {
    for (const auto& s : sources_) {
      if (s == source) return true;
    }
    return false;
  }

 private:
  const std::vector<std::string> sources_;
  std::mutex mutex_;
  std::unordered_map<std::string, prober_actor> pending_;
};

}  // namespace botgate
