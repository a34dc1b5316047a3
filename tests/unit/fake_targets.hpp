// Scripted fake targets for actor tests: each answers a router's Sends with the status its
// Script gives (or never), and records every attempt it saw.
#pragma once

#include <caf/all.hpp>
#include <functional>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "actors/messages.hpp"
#include "policies/delivery_rules.hpp"

namespace botgate::test {

using botgate::Event;
using botgate::IngestStatus;
using botgate::Outcome;
using botgate::target_actor;

struct Attempt {
  std::string target;
  std::string id;
  std::uint32_t attempt = 0;
  bool operator==(const Attempt&) const = default;
};

inline std::ostream& operator<<(std::ostream& os, const Attempt& a) {
  return os << a.id << "#" << a.attempt << "@" << a.target;
}

// What the fakes saw and what the shard acknowledged, in the order it happened.
struct Recorder {
  std::mutex mu;
  std::vector<Attempt> attempts;
  std::vector<std::pair<std::string, IngestStatus>> acks;

  void attempted(const std::string& target, const std::string& id, std::uint32_t n) {
    std::lock_guard lock(mu);
    attempts.push_back({target, id, n});
  }
  void acked(const std::string& id, IngestStatus s) {
    std::lock_guard lock(mu);
    acks.emplace_back(id, s);
  }
  std::vector<Attempt> seen() {
    std::lock_guard lock(mu);
    return attempts;
  }
  std::vector<Attempt> seen_for(const std::string& id) {
    std::lock_guard lock(mu);
    std::vector<Attempt> out;
    for (const auto& a : attempts) {
      if (a.id == id) out.push_back(a);
    }
    return out;
  }
  std::vector<std::pair<std::string, IngestStatus>> all_acks() {
    std::lock_guard lock(mu);
    return acks;
  }
};

// A fake target's answer to one attempt: an HTTP status, or nullopt for "never answer".
using Script = std::function<std::optional<unsigned>(const Event&, std::uint32_t attempt)>;

struct FakeTargetState {
  static inline const char* name = "fake-target";
};

inline target_actor::behavior_type fake_target(target_actor::stateful_pointer<FakeTargetState> self,
                                               std::string name, std::shared_ptr<Recorder> rec,
                                               Script script) {
  return {
      [self, name, rec, script](botgate::deliver_atom, const botgate::Sends& sends) {
        botgate::Results results;
        for (const auto& s : sends) {
          rec->attempted(name, s.ev->id, s.attempt);
          const auto status = script(*s.ev, s.attempt);
          if (!status) continue;  // never answers
          Outcome out;
          out.target = name;
          out.status = *status;
          if (botgate::classify_answer(*status) != botgate::Verdict::done) {
            out.error = "HTTP " + std::to_string(*status);
          }
          results.push_back(botgate::Result{s.ticket, s.leg, std::move(out)});
        }
        if (results.empty()) return;
        caf::anon_send(caf::actor_cast<caf::actor>(self->current_sender()),
                       botgate::outcome_atom::value, std::move(results));
      },
      [](botgate::done_atom, std::uint64_t, botgate::http::ClientResponse&) {},
      [](botgate::flush_atom) {},
  };
}

inline Script always(unsigned status) {
  return [status](const Event&, std::uint32_t) -> std::optional<unsigned> { return status; };
}

inline Script never_answers() {
  return [](const Event&, std::uint32_t) -> std::optional<unsigned> { return std::nullopt; };
}

// 200 unless (id, attempt) is listed as failing with the given status.
inline Script fail_on(std::vector<std::pair<std::string, std::uint32_t>> failing, unsigned status) {
  return [failing, status](const Event& ev, std::uint32_t attempt) -> std::optional<unsigned> {
    for (const auto& [id, n] : failing) {
      if (ev.id == id && attempt == n) return status;
    }
    return 200u;
  };
}

}  // namespace botgate::test
