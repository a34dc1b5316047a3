#include "storage/event_record.hpp"

#include <cstring>

namespace botgate::storage {
namespace {

constexpr std::uint8_t kVersion = 2;         // event payloads written now
constexpr std::uint8_t kVersionNoRoute = 1;  // still read: no route field
constexpr std::uint8_t kDeadLetterVersion = 1;

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
void put_str(std::string& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

// A bounds-checked cursor over a payload.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool u8(std::uint8_t& v) {
    if (in_.empty()) return false;
    v = static_cast<std::uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return true;
  }
  bool u32(std::uint32_t& v) { return fixed(v, 4); }
  bool u64(std::uint64_t& v) { return fixed(v, 8); }
  bool str(std::string& s) {
    std::uint32_t n = 0;
    if (!u32(n) || in_.size() < n) return false;
    s.assign(in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  std::string_view rest() const { return in_; }

 private:
  template <typename T>
  bool fixed(T& v, int bytes) {
    if (in_.size() < static_cast<std::size_t>(bytes)) return false;
    v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(in_[i]);
    in_.remove_prefix(static_cast<std::size_t>(bytes));
    return true;
  }
  std::string_view in_;
};

}  // namespace

std::int64_t to_unix_ms(std::chrono::system_clock::time_point t) noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

void encode_event(const Event& ev, std::string& out) {
  out.reserve(out.size() + 1 + 8 + 8 * 4 + ev.source.size() + ev.id.size() +
              ev.conversation.size() + ev.sender.size() + ev.type.size() + ev.text.size() +
              ev.raw.size() + ev.route.size());
  out.push_back(static_cast<char>(kVersion));
  put_u64(out, static_cast<std::uint64_t>(to_unix_ms(ev.received_wall)));
  for (const std::string* s :
       {&ev.source, &ev.id, &ev.conversation, &ev.sender, &ev.type, &ev.text, &ev.raw, &ev.route})
    put_str(out, *s);
}

std::string encode_event(const Event& ev) {
  std::string out;
  encode_event(ev, out);
  return out;
}

std::optional<Event> decode_event(std::string_view payload, Clock::time_point now_steady,
                                  std::chrono::system_clock::time_point now_wall) {
  Reader r(payload);
  std::uint8_t version = 0;
  std::uint64_t wall_ms = 0;
  if (!r.u8(version) || (version != kVersion && version != kVersionNoRoute) || !r.u64(wall_ms))
    return std::nullopt;
  Event ev;
  for (std::string* s :
       {&ev.source, &ev.id, &ev.conversation, &ev.sender, &ev.type, &ev.text, &ev.raw})
    if (!r.str(*s)) return std::nullopt;
  if (version == kVersion && !r.str(ev.route)) return std::nullopt;
  if (!r.rest().empty()) return std::nullopt;
  ev.received_wall = std::chrono::system_clock::time_point(
      std::chrono::milliseconds(static_cast<std::int64_t>(wall_ms)));
  const auto age = std::max(now_wall - ev.received_wall, std::chrono::system_clock::duration{0});
  ev.received_at = now_steady - std::chrono::duration_cast<Clock::duration>(age);
  return ev;
}

std::string encode_dead_letter(const Event& ev, std::uint32_t attempts, std::int64_t dead_at_ms,
                               std::string_view error) {
  std::string out;
  out.push_back(static_cast<char>(kDeadLetterVersion));
  put_u32(out, attempts);
  put_u64(out, static_cast<std::uint64_t>(dead_at_ms));
  put_str(out, error);
  encode_event(ev, out);
  return out;
}

std::optional<DeadLetter> decode_dead_letter(std::string_view payload, Clock::time_point now_steady,
                                             std::chrono::system_clock::time_point now_wall) {
  Reader r(payload);
  std::uint8_t version = 0;
  std::uint64_t dead_at = 0;
  DeadLetter dl;
  if (!r.u8(version) || version != kDeadLetterVersion || !r.u32(dl.attempts) || !r.u64(dead_at) ||
      !r.str(dl.error))
    return std::nullopt;
  auto ev = decode_event(r.rest(), now_steady, now_wall);
  if (!ev) return std::nullopt;
  dl.dead_at_ms = static_cast<std::int64_t>(dead_at);
  dl.event = std::move(*ev);
  return dl;
}

}  // namespace botgate::storage
