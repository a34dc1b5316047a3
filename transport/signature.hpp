// HMAC-SHA256 signatures, hex encoding and constant-time comparison, shared by every
// codec that signs or verifies (and by the test client and load generator that sign).
//
// The hashes run on OpenSSL's low-level SHA contexts, which live on the stack: one
// signature costs no heap allocation and no algorithm lookup (OpenSSL 3's one-shot
// HMAC() fetches the algorithm and allocates a dozen times per call, on a path that
// runs for every signed request).
#pragma once

#include <openssl/sha.h>

#include <array>
#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>

namespace botgate {

// Writes the lower-case hex of `n` bytes to out[0, 2n).
void write_hex(const unsigned char* bytes, std::size_t n, char* out);
// Appends it.
void append_hex(std::string& out, const unsigned char* bytes, std::size_t n);

// HMAC-SHA256 under one key. The key's inner and outer states are computed once, so a
// message costs its own blocks and one outer block. A message may be fed in pieces:
//
//   HmacSha256 mac(key);
//   mac.append_hex(out, {a, b});  // appends the 64 hex digits of HMAC(key, a + b)
//
// or, to keep a midstate (the load generator signs a prepared prefix ahead of time):
//
//   auto st = mac.begin();
//   HmacSha256::absorb(st, a);
//   ...later: HmacSha256::absorb(st, b); mac.finish(st, digits);
class HmacSha256 {
 public:
  using State = SHA256_CTX;
  static constexpr std::size_t kHexLength = 2 * SHA256_DIGEST_LENGTH;

  explicit HmacSha256(std::string_view key);

  State begin() const { return inner_; }
  static void absorb(State& st, std::string_view piece) {
    SHA256_Update(&st, piece.data(), piece.size());
  }
  // Writes the kHexLength lower-case hex digits of the MAC of what `st` absorbed to
  // out[0, kHexLength).
  void finish(State st, char* out) const;

  using Hex = std::array<char, kHexLength>;
  // The hex MAC of `pieces` concatenated, on the stack.
  Hex hex(std::initializer_list<std::string_view> pieces) const;
  // Appends it.
  void append_hex(std::string& out, std::initializer_list<std::string_view> pieces) const;

 private:
  State inner_{};
  State outer_{};
};

// Lower-case hex of HMAC-SHA256(key, message).
std::string hmac_sha256_hex(std::string_view key, std::string_view message);

// The generic-event signature header value: "v1=" + hex HMAC(secret, ts + "." + body).
inline constexpr std::string_view kGenericSignaturePrefix = "v1=";
std::string generic_signature(std::string_view secret, std::string_view timestamp,
                              std::string_view body);
// The same with the secret keyed once (a source's key, kept for all its requests).
std::string generic_signature(const HmacSha256& mac, std::string_view timestamp,
                              std::string_view body);

// Compares in time that depends only on the lengths, never on where bytes differ.
bool constant_time_equal(std::string_view a, std::string_view b) noexcept;

}  // namespace botgate
