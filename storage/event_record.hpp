// How an Event and a dead letter are laid out inside a segment-log record payload.
//
// Event payload (version 2), little-endian:
//   u8  version = 2
//   i64 received_wall   unix time in milliseconds
//   8 × (u32 length, bytes): source, id, conversation, sender, type, text, raw, route
// Version 1 (written before routes) is the same without `route`, and is still read.
//
// Dead-letter payload (version 1):
//   u8  version = 1
//   u32 attempts
//   i64 dead_at         unix ms
//   u32 length, bytes   the last error
//   the event payload above (either version)
//
// Decoding never throws: a payload that does not parse is reported as nullopt (the CRC
// already vouched for the bytes, so this only happens across incompatible versions).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/event.hpp"

namespace botgate::storage {

std::int64_t to_unix_ms(std::chrono::system_clock::time_point t) noexcept;
inline std::int64_t unix_now_ms() {
  return to_unix_ms(std::chrono::system_clock::now());
}

std::string encode_event(const Event& ev);
void encode_event(const Event& ev, std::string& out);  // appends

// `now_*` rebuild the monotonic received_at from the stored wall-clock time, so an
// event's age (for max_age) keeps counting across restarts.
std::optional<Event> decode_event(std::string_view payload, Clock::time_point now_steady,
                                  std::chrono::system_clock::time_point now_wall);

// An event together with its sequence number in the shard's event log.
struct StoredEvent {
  EventPtr ev;
  std::uint64_t seq = 0;
};

// What the dead-letter list shows about one dead letter.
struct DeadLetterInfo {
  std::uint64_t seq = 0;  // in the dead-letter log
  std::size_t shard = 0;
  std::string source;
  std::string id;
  std::string conversation;
  std::uint32_t attempts = 0;
  std::string error;
  std::int64_t received_ms = 0;
  std::int64_t dead_at_ms = 0;

  static DeadLetterInfo of(std::uint64_t seq, const Event& ev, std::uint32_t attempts,
                           std::string error, std::int64_t dead_at_ms) {
    return DeadLetterInfo{seq,
                          0,
                          ev.source,
                          ev.id,
                          ev.conversation,
                          attempts,
                          std::move(error),
                          to_unix_ms(ev.received_wall),
                          dead_at_ms};
  }
};

struct DeadLetter {
  std::uint32_t attempts = 0;
  std::int64_t dead_at_ms = 0;
  std::string error;
  Event event;
};

std::string encode_dead_letter(const Event& ev, std::uint32_t attempts, std::int64_t dead_at_ms,
                               std::string_view error);
std::optional<DeadLetter> decode_dead_letter(std::string_view payload, Clock::time_point now_steady,
                                             std::chrono::system_clock::time_point now_wall);

}  // namespace botgate::storage
