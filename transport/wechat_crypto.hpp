// WXBizMsgCrypt, the callback crypto shared by WeChat Official Accounts (safe mode) and
// WeCom: SHA-1 signatures over sorted strings, and AES-256-CBC message envelopes.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace botgate::wechat {

// Lower-case hex SHA-1 of token, timestamp and nonce, sorted bytewise and concatenated.
// This is the Official Account's `signature` query parameter (URL check, plaintext mode).
std::string signature(std::string_view token, std::string_view timestamp, std::string_view nonce);

// As signature(), with the Encrypt value as a fourth string: the `msg_signature` parameter
// of safe-mode Official Account and of every WeCom callback.
std::string msg_signature(std::string_view token, std::string_view timestamp,
                          std::string_view nonce, std::string_view encrypt);

// Compare the received hex against the expected signature in constant time.
bool verify_signature(std::string_view received, std::string_view token, std::string_view timestamp,
                      std::string_view nonce);
bool verify_msg_signature(std::string_view received, std::string_view token,
                          std::string_view timestamp, std::string_view nonce,
                          std::string_view encrypt);

enum class CryptoStatus {
  ok,
  bad_base64,         // not standard padded base64
  bad_block_size,     // ciphertext empty or not a whole number of AES blocks
  bad_padding,        // PKCS#7 pad byte outside 1..32, or pad bytes differ
  bad_length,         // shorter than the 20-byte header, or length field past the data
  receiver_mismatch,  // trailing app id / corp id differs from the expected one
  message_too_long,   // encrypt: message longer than the 4-byte length field allows
  crypto_failure,     // OpenSSL refused (out of memory, no randomness)
};

const char* to_string(CryptoStatus s) noexcept;

// The AES key and IV derived from a 43-character EncodingAESKey. Built only through parse(),
// so a value of this type always holds a valid key. Wiped on destruction.
class AesKey {
 public:
  static constexpr std::size_t kEncodedLength = 43;
  static constexpr std::size_t kKeyLength = 32;
  static constexpr std::size_t kIvLength = 16;

  // key = base64-decode(encoding_aes_key + "="), which must give 32 bytes. On failure returns
  // nullopt and says why in `error` (safe to log: it never echoes the key).
  static std::optional<AesKey> parse(std::string_view encoding_aes_key, std::string& error);

  AesKey(const AesKey&) = default;
  AesKey& operator=(const AesKey&) = default;
  ~AesKey();

  const unsigned char* key() const noexcept { return bytes_.data(); }
  // The IV is the key's first 16 bytes.
  const unsigned char* iv() const noexcept { return bytes_.data(); }

 private:
  AesKey() = default;
  std::array<unsigned char, kKeyLength> bytes_{};
};

// Bytes that open every plaintext envelope; random in production, fixed in tests.
using RandomPrefix = std::array<unsigned char, 16>;

// Opens an Encrypt (or WeCom echostr) value: base64, AES-256-CBC, PKCS#7 for 32-byte
// blocks, then 16 random bytes | 4-byte big-endian length | message | receiver id. The
// receiver id (app id for an Official Account, corp id for WeCom) must equal
// `expected_receiver_id` exactly. On ok `message` holds the plaintext; otherwise it is
// cleared. Never throws on bad input.
CryptoStatus decrypt(const AesKey& key, std::string_view encrypt_b64,
                     std::string_view expected_receiver_id, std::string& message);

// The inverse of decrypt(), with the 16 leading bytes given. On ok `encrypt_b64` holds the
// base64 ciphertext.
CryptoStatus encrypt(const AesKey& key, std::string_view message, std::string_view receiver_id,
                     const RandomPrefix& random, std::string& encrypt_b64);

// As above, with the leading bytes from RAND_bytes.
CryptoStatus encrypt(const AesKey& key, std::string_view message, std::string_view receiver_id,
                     std::string& encrypt_b64);

// Standard base64 (RFC 4648 alphabet, '=' padding), exposed for the tests and the codec.
std::string base64_encode(std::string_view bytes);
// Strict about the alphabet, length and padding; ignores the unused low bits of the last
// character, as every WXBizMsgCrypt sample does (their EncodingAESKeys set them).
std::optional<std::string> base64_decode(std::string_view text);
// The same into `out` (its capacity reused); false, with `out` unspecified, if invalid.
bool base64_decode_into(std::string_view text, std::string& out);

}  // namespace botgate::wechat
