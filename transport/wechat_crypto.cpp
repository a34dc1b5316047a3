#include "transport/wechat_crypto.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <memory>
#include <string_view>

#include "transport/signature.hpp"

namespace botgate::wechat {

namespace {

constexpr std::size_t kHeaderLength = 16 + 4;  // random prefix + length field
constexpr std::size_t kPadBlock = 32;          // WXBizMsgCrypt pads to 32, not AES's 16
constexpr std::size_t kAesBlock = 16;

// Fetched once: the implicit EVP_aes_256_cbc() looks the algorithm up on every use in
// OpenSSL 3, which shows on a per-callback path.
const EVP_CIPHER* aes_256_cbc() {
  static EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr);
  return cipher;
}

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* ctx) const noexcept { EVP_CIPHER_CTX_free(ctx); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

// One cipher context per thread and direction, keyed for the last key it ran with. Keying a
// context (a new provider context, the key schedule, the padding parameter) cost more than
// decrypting a whole callback; a context already keyed for this key only takes the IV again
// (CBC carries state from call to call, so the IV is always set).
struct KeyedContext {
  CipherCtx ctx{EVP_CIPHER_CTX_new()};
  std::array<unsigned char, AesKey::kKeyLength> key{};
  bool keyed = false;
  ~KeyedContext() { OPENSSL_cleanse(key.data(), key.size()); }
};

// Runs AES-256-CBC without OpenSSL's padding over whole blocks; false if OpenSSL fails.
// `in` and `out` may be the same buffer.
bool aes_cbc(const AesKey& key, bool encrypting, const unsigned char* in, std::size_t size,
             unsigned char* out) {
  const EVP_CIPHER* cipher = aes_256_cbc();
  if (cipher == nullptr || size % kAesBlock != 0 || size > static_cast<std::size_t>(INT_MAX)) {
    return false;
  }
  thread_local KeyedContext contexts[2];
  KeyedContext& k = contexts[encrypting ? 1 : 0];
  if (!k.ctx) return false;
  const int enc = encrypting ? 1 : 0;
  if (k.keyed && CRYPTO_memcmp(k.key.data(), key.key(), k.key.size()) == 0) {
    if (EVP_CipherInit_ex2(k.ctx.get(), nullptr, nullptr, key.iv(), enc, nullptr) != 1) {
      return false;
    }
  } else {
    k.keyed = false;
    if (EVP_CipherInit_ex2(k.ctx.get(), cipher, key.key(), key.iv(), enc, nullptr) != 1 ||
        EVP_CIPHER_CTX_set_padding(k.ctx.get(), 0) != 1) {
      return false;
    }
    std::copy(key.key(), key.key() + k.key.size(), k.key.begin());
    k.keyed = true;
  }
  int written = 0;
  int final_written = 0;
  if (EVP_CipherUpdate(k.ctx.get(), out, &written, in, static_cast<int>(size)) != 1 ||
      EVP_CipherFinal_ex(k.ctx.get(), out + written, &final_written) != 1) {
    k.keyed = false;  // state unknown: key it afresh next time
    return false;
  }
  return static_cast<std::size_t>(written) + static_cast<std::size_t>(final_written) == size;
}

using Sha1Hex = std::array<char, 2 * SHA_DIGEST_LENGTH>;

// The hex SHA-1 of `parts` sorted bytewise and concatenated, on a stack context and into a
// stack array: no join, no allocation.
template <std::size_t N>
Sha1Hex sorted_sha1_hex(std::array<std::string_view, N> parts) {
  std::sort(parts.begin(), parts.end());
  SHA_CTX ctx;
  SHA1_Init(&ctx);
  for (std::string_view p : parts) SHA1_Update(&ctx, p.data(), p.size());
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1_Final(digest, &ctx);
  Sha1Hex out;
  write_hex(digest, sizeof digest, out.data());
  return out;
}

std::string hex_string(const Sha1Hex& h) {
  return std::string(h.data(), h.size());
}

bool matches(std::string_view received, const Sha1Hex& expected) {
  return constant_time_equal(received, {expected.data(), expected.size()});
}

// Standard base64 (RFC 4648 section 4), for encoding and decoding alike.
constexpr std::string_view kBase64Alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// 0..63 for an alphabet character, 0xff otherwise: one load per character on the
// decrypt path, which decodes every callback's Encrypt field.
constexpr std::array<std::uint8_t, 256> kBase64Values = [] {
  std::array<std::uint8_t, 256> table{};
  table.fill(0xff);
  for (std::size_t i = 0; i < kBase64Alphabet.size(); ++i) {
    table[static_cast<unsigned char>(kBase64Alphabet[i])] = static_cast<std::uint8_t>(i);
  }
  return table;
}();

}  // namespace

std::string signature(std::string_view token, std::string_view timestamp, std::string_view nonce) {
  return hex_string(sorted_sha1_hex<3>({token, timestamp, nonce}));
}

std::string msg_signature(std::string_view token, std::string_view timestamp,
                          std::string_view nonce, std::string_view encrypt) {
  return hex_string(sorted_sha1_hex<4>({token, timestamp, nonce, encrypt}));
}

bool verify_signature(std::string_view received, std::string_view token, std::string_view timestamp,
                      std::string_view nonce) {
  return matches(received, sorted_sha1_hex<3>({token, timestamp, nonce}));
}

bool verify_msg_signature(std::string_view received, std::string_view token,
                          std::string_view timestamp, std::string_view nonce,
                          std::string_view encrypt) {
  return matches(received, sorted_sha1_hex<4>({token, timestamp, nonce, encrypt}));
}

const char* to_string(CryptoStatus s) noexcept {
  switch (s) {
    case CryptoStatus::ok:
      return "ok";
    case CryptoStatus::bad_base64:
      return "bad_base64";
    case CryptoStatus::bad_block_size:
      return "bad_block_size";
    case CryptoStatus::bad_padding:
      return "bad_padding";
    case CryptoStatus::bad_length:
      return "bad_length";
    case CryptoStatus::receiver_mismatch:
      return "receiver_mismatch";
    case CryptoStatus::message_too_long:
      return "message_too_long";
    case CryptoStatus::crypto_failure:
      return "crypto_failure";
  }
  return "unknown";
}

std::optional<AesKey> AesKey::parse(std::string_view encoding_aes_key, std::string& error) {
  if (encoding_aes_key.size() != kEncodedLength) {
    error = "EncodingAESKey must be 43 characters, got " + std::to_string(encoding_aes_key.size());
    return std::nullopt;
  }
  std::string padded(encoding_aes_key);
  padded.push_back('=');
  std::optional<std::string> raw = base64_decode(padded);
  OPENSSL_cleanse(padded.data(), padded.size());
  if (!raw) {
    error = "EncodingAESKey is not base64 (allowed: A-Z a-z 0-9 + /)";
    return std::nullopt;
  }
  if (raw->size() != kKeyLength) {
    error = "EncodingAESKey must decode to 32 bytes, got " + std::to_string(raw->size());
    OPENSSL_cleanse(raw->data(), raw->size());
    return std::nullopt;
  }
  AesKey key;
  std::copy(raw->begin(), raw->end(), key.bytes_.begin());
  OPENSSL_cleanse(raw->data(), raw->size());
  return key;
}

AesKey::~AesKey() {
  OPENSSL_cleanse(bytes_.data(), bytes_.size());
}

// One buffer, `message`, from end to end: the base64 is decoded into it, decrypted in place
// (CBC decryption may write over its input), and cut down to the message. A callback's
// ciphertext is over a kilobyte, and each allocation that size costs glibc a pass over its
// free lists, so this path makes one, not three.
CryptoStatus decrypt(const AesKey& key, std::string_view encrypt_b64,
                     std::string_view expected_receiver_id, std::string& message) {
  const auto fail = [&](CryptoStatus st) {
    message.clear();
    return st;
  };
  if (!base64_decode_into(encrypt_b64, message)) return fail(CryptoStatus::bad_base64);
  const std::size_t size = message.size();
  if (size == 0 || size % kAesBlock != 0) return fail(CryptoStatus::bad_block_size);

  auto* bytes = reinterpret_cast<unsigned char*>(message.data());
  if (!aes_cbc(key, false, bytes, size, bytes)) return fail(CryptoStatus::crypto_failure);

  const unsigned char pad = bytes[size - 1];
  if (pad < 1 || pad > kPadBlock || pad > size) return fail(CryptoStatus::bad_padding);
  for (std::size_t i = size - pad; i < size; ++i) {
    if (bytes[i] != pad) return fail(CryptoStatus::bad_padding);
  }
  const std::size_t content = size - pad;
  if (content < kHeaderLength) return fail(CryptoStatus::bad_length);

  const unsigned char* p = bytes + 16;
  const std::uint32_t length = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
                               (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
  if (length > content - kHeaderLength) return fail(CryptoStatus::bad_length);

  const std::string_view body(message.data() + kHeaderLength, content - kHeaderLength);
  if (!constant_time_equal(body.substr(length), expected_receiver_id)) {
    return fail(CryptoStatus::receiver_mismatch);
  }
  message.erase(0, kHeaderLength);
  message.resize(length);
  return CryptoStatus::ok;
}

CryptoStatus encrypt(const AesKey& key, std::string_view message, std::string_view receiver_id,
                     const RandomPrefix& random, std::string& encrypt_b64) {
  encrypt_b64.clear();
  if (message.size() > UINT32_MAX) return CryptoStatus::message_too_long;
  const std::size_t content = kHeaderLength + message.size() + receiver_id.size();
  const std::size_t pad = kPadBlock - content % kPadBlock;  // 1..32, a full block if aligned

  std::string plain;
  plain.reserve(content + pad);
  plain.append(reinterpret_cast<const char*>(random.data()), random.size());
  const auto length = static_cast<std::uint32_t>(message.size());
  plain.push_back(static_cast<char>((length >> 24) & 0xff));
  plain.push_back(static_cast<char>((length >> 16) & 0xff));
  plain.push_back(static_cast<char>((length >> 8) & 0xff));
  plain.push_back(static_cast<char>(length & 0xff));
  plain.append(message);
  plain.append(receiver_id);
  plain.append(pad, static_cast<char>(pad));

  std::string cipher_text(plain.size(), '\0');
  if (!aes_cbc(key, true, reinterpret_cast<const unsigned char*>(plain.data()), plain.size(),
               reinterpret_cast<unsigned char*>(cipher_text.data()))) {
    return CryptoStatus::crypto_failure;
  }
  encrypt_b64 = base64_encode(cipher_text);
  return CryptoStatus::ok;
}

CryptoStatus encrypt(const AesKey& key, std::string_view message, std::string_view receiver_id,
                     std::string& encrypt_b64) {
  RandomPrefix random{};
  if (RAND_bytes(random.data(), static_cast<int>(random.size())) != 1) {
    encrypt_b64.clear();
    return CryptoStatus::crypto_failure;
  }
  return encrypt(key, message, receiver_id, random, encrypt_b64);
}

std::string base64_encode(std::string_view bytes) {
  constexpr std::string_view alphabet = kBase64Alphabet;
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  const auto at = [&](std::size_t k) {
    return std::uint32_t{static_cast<unsigned char>(bytes[k])};
  };
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t v = (at(i) << 16) | (at(i + 1) << 8) | at(i + 2);
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(alphabet[(v >> 6) & 63]);
    out.push_back(alphabet[v & 63]);
  }
  const std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    const std::uint32_t v = at(i) << 16;
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.append("==");
  } else if (rest == 2) {
    const std::uint32_t v = (at(i) << 16) | (at(i + 1) << 8);
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(alphabet[(v >> 6) & 63]);
    out.push_back('=');
  }
  return out;
}

bool base64_decode_into(std::string_view text, std::string& out) {
  out.clear();
  if (text.size() % 4 != 0) return false;
  std::size_t padding = 0;
  while (padding < 2 && padding < text.size() && text[text.size() - 1 - padding] == '=') {
    ++padding;
  }
  const std::size_t data_chars = text.size() - padding;
  const auto value = [&](std::size_t i) {
    return std::uint32_t{kBase64Values[static_cast<unsigned char>(text[i])]};
  };

  // Each 4 characters give 3 bytes; the last group (with its padding) gives 1 or 2.
  out.resize(data_chars * 6 / 8);
  char* o = out.data();
  std::size_t i = 0;
  for (; i + 4 <= data_chars; i += 4) {
    const std::uint32_t a = value(i), b = value(i + 1), c = value(i + 2), d = value(i + 3);
    if ((a | b | c | d) > 63) return false;  // includes a stray '=' before the padding
    const std::uint32_t v = (a << 18) | (b << 12) | (c << 6) | d;
    *o++ = static_cast<char>(v >> 16);
    *o++ = static_cast<char>((v >> 8) & 0xff);
    *o++ = static_cast<char>(v & 0xff);
  }
  const std::size_t rest = data_chars - i;  // 0, 2 or 3 (1 cannot happen: padding <= 2)
  if (rest >= 2) {
    const std::uint32_t a = value(i), b = value(i + 1), c = rest == 3 ? value(i + 2) : 0;
    if ((a | b | c) > 63) return false;
    const std::uint32_t v = (a << 18) | (b << 12) | (c << 6);
    *o++ = static_cast<char>(v >> 16);
    if (rest == 3) *o++ = static_cast<char>((v >> 8) & 0xff);
  }
  return true;
}

std::optional<std::string> base64_decode(std::string_view text) {
  std::string out;
  if (!base64_decode_into(text, out)) return std::nullopt;
  return out;
}

}  // namespace botgate::wechat
