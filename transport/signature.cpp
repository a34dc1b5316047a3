#include "transport/signature.hpp"

#include <openssl/crypto.h>

#include <cstring>

namespace botgate {

void write_hex(const unsigned char* bytes, std::size_t n, char* out) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0x0f];
  }
}

void append_hex(std::string& out, const unsigned char* bytes, std::size_t n) {
  const std::size_t at = out.size();
  out.resize(at + 2 * n);
  write_hex(bytes, n, out.data() + at);
}

HmacSha256::HmacSha256(std::string_view key) {
  unsigned char block[SHA256_CBLOCK] = {};
  if (key.size() > SHA256_CBLOCK) {
    SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), block);
  } else {
    std::memcpy(block, key.data(), key.size());
  }
  unsigned char ipad[SHA256_CBLOCK];
  unsigned char opad[SHA256_CBLOCK];
  for (std::size_t i = 0; i < SHA256_CBLOCK; ++i) {
    ipad[i] = static_cast<unsigned char>(block[i] ^ 0x36);
    opad[i] = static_cast<unsigned char>(block[i] ^ 0x5c);
  }
  SHA256_Init(&inner_);
  SHA256_Update(&inner_, ipad, sizeof ipad);
  SHA256_Init(&outer_);
  SHA256_Update(&outer_, opad, sizeof opad);
  OPENSSL_cleanse(block, sizeof block);
  OPENSSL_cleanse(ipad, sizeof ipad);
  OPENSSL_cleanse(opad, sizeof opad);
}

void HmacSha256::finish(State st, char* out) const {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256_Final(d, &st);
  State outer = outer_;
  SHA256_Update(&outer, d, sizeof d);
  SHA256_Final(d, &outer);
  write_hex(d, sizeof d, out);
}

HmacSha256::Hex HmacSha256::hex(std::initializer_list<std::string_view> pieces) const {
  State st = begin();
  for (std::string_view p : pieces) absorb(st, p);
  Hex out;
  finish(st, out.data());
  return out;
}

void HmacSha256::append_hex(std::string& out,
                            std::initializer_list<std::string_view> pieces) const {
  const Hex digits = hex(pieces);
  out.append(digits.data(), digits.size());
}

std::string hmac_sha256_hex(std::string_view key, std::string_view message) {
  std::string out;
  HmacSha256(key).append_hex(out, {message});
  return out;
}

std::string generic_signature(const HmacSha256& mac, std::string_view timestamp,
                              std::string_view body) {
  std::string out;
  out.reserve(kGenericSignaturePrefix.size() + HmacSha256::kHexLength);
  out = kGenericSignaturePrefix;
  mac.append_hex(out, {timestamp, ".", body});
  return out;
}

std::string generic_signature(std::string_view secret, std::string_view timestamp,
                              std::string_view body) {
  return generic_signature(HmacSha256(secret), timestamp, body);
}

bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace botgate
