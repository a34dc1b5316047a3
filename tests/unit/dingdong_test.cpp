// The dingdong registry: which inbound events are a probe's dong (consumed, never queued) and
// which are ordinary messages that must reach the backends.
#include "actors/dingdong.hpp"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

using botgate::DingRegistry;
using botgate::Event;
using botgate::prober_actor;

namespace {

Event event(const std::string& source, const std::string& sender, const std::string& text) {
  Event ev;
  ev.source = source;
  ev.id = "m-1";
  ev.conversation = sender;
  ev.sender = sender;
  ev.text = text;
  return ev;
}

const std::string kNonce = "0123456789abcdef";

}  // namespace

TEST_CASE("a user's message that starts with dong is not a probe answer", "[dingdong][ha]") {
  DingRegistry reg(std::vector<DingRegistry::Watch>{{"oa", "wx-peer"}});
  using Claim = DingRegistry::Claim;
  CHECK(reg.claim(event("oa", "customer-42", "dong ge, where is my order?")) == Claim::none);
  CHECK(reg.claim(event("oa", "customer-42", "dong " + kNonce)) == Claim::none);  // not the peer
  CHECK(reg.claim(event("other", "wx-peer", "dong " + kNonce)) == Claim::none);   // wrong source
  CHECK(reg.claim(event("oa", "wx-peer", "dong " + kNonce + " ok")) == Claim::none);
  CHECK(reg.claim(event("oa", "wx-peer", "dong 0123456789ABCDEF")) == Claim::none);
  CHECK(reg.claim(event("oa", "wx-peer", "ding " + kNonce)) == Claim::none);
  // The peer's dong for a nonce nobody waits for: consumed, stale.
  CHECK(reg.claim(event("oa", "wx-peer", "dong " + kNonce)) == Claim::stale);
}

TEST_CASE("a dong answers its waiting prober once", "[dingdong][ha]") {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto got = std::make_shared<std::atomic<int>>(0);
  auto prober = sys.spawn([got](prober_actor::pointer) -> prober_actor::behavior_type {
    return {
        [](botgate::tick_atom) {},
        [](botgate::done_atom, std::uint64_t, botgate::http::ClientResponse&) {},
        [](botgate::outcome_atom, const botgate::Results&) {},
        [got](botgate::dong_atom, const std::string& nonce) {
          if (nonce == kNonce) ++*got;
        },
        [](botgate::timeout_atom, std::uint64_t) {},
    };
  });
  DingRegistry reg(std::vector<DingRegistry::Watch>{{"oa", "wx-peer"}});
  reg.expect(kNonce, prober);
  using Claim = DingRegistry::Claim;
  CHECK(reg.claim(event("oa", "wx-peer", "dong " + kNonce)) == Claim::answered);
  CHECK(reg.claim(event("oa", "wx-peer", "dong " + kNonce)) == Claim::stale);  // only once
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (*got == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  CHECK(*got == 1);
  // A forgotten nonce (the probe timed out) is stale.
  reg.expect("fedcba9876543210", prober);
  reg.forget("fedcba9876543210");
  CHECK(reg.claim(event("oa", "wx-peer", "dong fedcba9876543210")) == Claim::stale);
  caf::anon_send_exit(prober, caf::exit_reason::user_shutdown);
}
