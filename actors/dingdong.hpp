// The dingdong health check's two halves meet here. A prober sends "ding <nonce>" through its
// target and registers the nonce; the HTTP side hands every inbound event to claim(), which
// recognises a dong: an event on a probe's source, from (or in the conversation of) that probe's
// peer, whose text is exactly "dong <nonce>" (16 hex digits). It tells the waiting prober and
// keeps the event out of the queue. A nonce is answered once: a repeated or late dong finds
// nothing and is stale (consumed too: it is the peer's automatic reply, not a user's message).
// Anything else, even "dong ..." from someone else, is an ordinary event.
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
inline constexpr std::size_t kNonceDigits = 16;  // lowercase hex

class DingRegistry {
 public:
  enum class Claim { none, answered, stale };

  // Where dongs may arrive and from whom: the probes' (source, peer) pairs. Fixed for the
  // registry's life.
  struct Watch {
    std::string source;
    std::string peer;
  };
  explicit DingRegistry(std::vector<Watch> watches) : watches_(std::move(watches)) {}

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
    if (!is_dong(ev)) return Claim::none;
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

  // "dong " and 16 lowercase hex digits, from a watched peer on its probe's source.
  bool is_dong(const Event& ev) const noexcept {
    const std::string_view text = ev.text;
    if (text.size() != kDongPrefix.size() + kNonceDigits || !text.starts_with(kDongPrefix)) {
      return false;
    }
    for (char c : text.substr(kDongPrefix.size())) {
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    for (const auto& w : watches_) {
      if (w.source == ev.source && (w.peer == ev.sender || w.peer == ev.conversation)) return true;
    }
    return false;
  }

 private:
  const std::vector<Watch> watches_;
  std::mutex mutex_;
  std::unordered_map<std::string, prober_actor> pending_;
};

}  // namespace botgate
