#include "transport/wechat_crypto.hpp"

#include <openssl/evp.h>

#include <catch2/catch.hpp>
#include <cctype>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "tests/unit/wechat_samples.hpp"
#include "transport/signature.hpp"

namespace wx = botgate::wechat;
using wx::AesKey;
using wx::CryptoStatus;

namespace {

using namespace botgate::test::wecom_sample;

// ---------------------------------------------------------------------------------------
// Published vectors.
//
// WeChat Official Account: the official safe-mode sample (WXBizMsgCrypt Sample.py of the
// Official Account "消息加解密" download), repeated in e.g. wechatpy's and pywe-sign's tests.
const std::string kOaToken = "spamtest";
const std::string kOaAppId = "wx2c2769f8efd9abc2";
const std::string kOaKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const std::string kOaTs = "1409735669";
const std::string kOaNonce = "1320562132";
const std::string kOaMsgSig = "5d197aaffba7e9b25a30732f161a50dee96bd5fa";
const std::string kOaEncrypt =
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6"
    "F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T33"
    "2jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCg"
    "avjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6Oewp"
    "usjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=";
const std::string kOaPlain =
    "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n"
    "<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n"
    "<CreateTime>1409735668</CreateTime>\n"
    "<MsgType><![CDATA[text]]></MsgType>\n"
    "<Content><![CDATA[abcdteT]]></Content>\n"
    "<MsgId>6054768590064713728</MsgId>\n"
    "</xml>";
// The plain `signature` of the same token/timestamp/nonce, as published in third-party
// tests of the OA sample (e.g. the chatgpt-bot Cloudflare worker's wechat.test.ts).
const std::string kOaPlainSig = "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a";

// The 16 "random" bytes that open each sample's plaintext (ASCII in Tencent's samples).
// With them, encrypt() must reproduce the published ciphertext byte for byte.
wx::RandomPrefix prefix(std::string_view ascii16) {
  wx::RandomPrefix p{};
  REQUIRE(ascii16.size() == p.size());
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<unsigned char>(ascii16[i]);
  return p;
}

AesKey key_of(const std::string& encoding_aes_key) {
  std::string error;
  std::optional<AesKey> key = AesKey::parse(encoding_aes_key, error);
  INFO(error);
  REQUIRE(key.has_value());
  return *key;
}

std::string hex(const unsigned char* p, std::size_t n) {
  std::string out;
  botgate::append_hex(out, p, n);
  return out;
}

std::vector<unsigned char> unhex(std::string_view h) {
  std::vector<unsigned char> out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2) {
    out.push_back(static_cast<unsigned char>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

// The WeCom sample key's raw bytes, from base64-decoding it independently (Python).
const std::vector<unsigned char> kWecomKeyBytes =
    unhex("8d69989bbaabe67328014c194631ad0719b3dca035b64023df292447aab60760");

// Encrypts arbitrary bytes (already a whole number of blocks) with the WeCom sample key,
// straight through EVP, so the tests can hand decrypt() envelopes that encrypt() would
// never build.
std::string raw_encrypt(const std::string& plain) {
  REQUIRE(plain.size() % 16 == 0);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  REQUIRE(ctx != nullptr);
  std::string out(plain.size() + 16, '\0');
  int n1 = 0, n2 = 0;
  const bool ok =
      EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), nullptr, kWecomKeyBytes.data(),
                         kWecomKeyBytes.data()) == 1 &&
      EVP_CIPHER_CTX_set_padding(ctx, 0) == 1 &&
      EVP_EncryptUpdate(ctx, reinterpret_cast<unsigned char*>(out.data()), &n1,
                        reinterpret_cast<const unsigned char*>(plain.data()),
                        static_cast<int>(plain.size())) == 1 &&
      EVP_EncryptFinal_ex(ctx, reinterpret_cast<unsigned char*>(out.data()) + n1, &n2) == 1;
  EVP_CIPHER_CTX_free(ctx);
  REQUIRE(ok);
  out.resize(static_cast<std::size_t>(n1 + n2));
  return wx::base64_encode(out);
}

std::string be32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

// 16 prefix bytes | length | body (message and receiver id), then the given padding.
std::string envelope(std::uint32_t length_field, const std::string& body,
                     const std::string& padding) {
  return std::string(16, 'R') + be32(length_field) + body + padding;
}

std::string pkcs7_32(std::size_t content_size) {
  const std::size_t pad = 32 - content_size % 32;
  return std::string(pad, static_cast<char>(pad));
}

CryptoStatus open_with(const AesKey& key, const std::string& b64, const std::string& receiver,
                       std::string& message) {
  message = "stale";  // decrypt must clear it on failure
  return wx::decrypt(key, b64, receiver, message);
}

CryptoStatus open_wecom(const std::string& b64, std::string& message) {
  return open_with(key_of(kWecomKey), b64, kWecomCorpId, message);
}

std::string flip(std::string b64, std::size_t byte, unsigned char mask) {
  std::string raw = *wx::base64_decode(b64);
  raw[byte] = static_cast<char>(static_cast<unsigned char>(raw[byte]) ^ mask);
  return wx::base64_encode(raw);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Signatures

TEST_CASE("WeCom sample: URL-verification msg_signature matches", "[wechat][crypto]") {
  CHECK(wx::msg_signature(kWecomToken, kWecomVerifyTs, kWecomVerifyNonce, kWecomEchoStr) ==
        kWecomVerifySig);
  CHECK(wx::verify_msg_signature(kWecomVerifySig, kWecomToken, kWecomVerifyTs, kWecomVerifyNonce,
                                 kWecomEchoStr));
}

TEST_CASE("WeCom sample: message msg_signature matches", "[wechat][crypto]") {
  CHECK(wx::msg_signature(kWecomToken, kWecomMsgTs, kWecomMsgNonce, kWecomEncrypt) == kWecomMsgSig);
  CHECK(wx::verify_msg_signature(kWecomMsgSig, kWecomToken, kWecomMsgTs, kWecomMsgNonce,
                                 kWecomEncrypt));
}

TEST_CASE("Official Account sample: msg_signature and signature match", "[wechat][crypto]") {
  CHECK(wx::msg_signature(kOaToken, kOaTs, kOaNonce, kOaEncrypt) == kOaMsgSig);
  CHECK(wx::verify_msg_signature(kOaMsgSig, kOaToken, kOaTs, kOaNonce, kOaEncrypt));
  CHECK(wx::signature(kOaToken, kOaTs, kOaNonce) == kOaPlainSig);
  CHECK(wx::verify_signature(kOaPlainSig, kOaToken, kOaTs, kOaNonce));
}

TEST_CASE("signature matches pywe-sign's published callback vector", "[wechat][crypto]") {
  // pywe-sign tests: token 789, timestamp 456, nonce 123.
  CHECK(wx::signature("789", "456", "123") == "f7c3bc1d808e04732adf679965ccc34ca7ae3441");
}

TEST_CASE("signature sorts its inputs, so argument order does not matter", "[wechat][crypto]") {
  const std::string a = wx::msg_signature(kOaToken, kOaTs, kOaNonce, kOaEncrypt);
  CHECK(wx::msg_signature(kOaEncrypt, kOaNonce, kOaTs, kOaToken) == a);
  CHECK(wx::msg_signature(kOaNonce, kOaToken, kOaEncrypt, kOaTs) == a);
  CHECK(wx::signature(kOaNonce, kOaTs, kOaToken) == kOaPlainSig);
}

TEST_CASE("signature is 40 lower-case hex digits", "[wechat][crypto]") {
  const std::string sig = wx::signature("t", "1", "n");
  REQUIRE(sig.size() == 40);
  for (char c : sig) CHECK(((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')));
}

TEST_CASE("verify refuses a wrong, altered, truncated or empty signature", "[wechat][crypto]") {
  std::string altered = kWecomMsgSig;
  altered.back() = altered.back() == '0' ? '1' : '0';
  std::string upper = kWecomMsgSig;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const std::string& bad : {altered, kWecomMsgSig.substr(0, 39), std::string(), upper,
                                 kWecomMsgSig + "0", kWecomVerifySig}) {
    INFO("signature " << bad);
    CHECK_FALSE(
        wx::verify_msg_signature(bad, kWecomToken, kWecomMsgTs, kWecomMsgNonce, kWecomEncrypt));
  }
  // Any input change breaks it: token, timestamp, nonce, one ciphertext character.
  CHECK_FALSE(
      wx::verify_msg_signature(kWecomMsgSig, "QDG6eL", kWecomMsgTs, kWecomMsgNonce, kWecomEncrypt));
  CHECK_FALSE(wx::verify_msg_signature(kWecomMsgSig, kWecomToken, "1409659814", kWecomMsgNonce,
                                       kWecomEncrypt));
  CHECK_FALSE(wx::verify_msg_signature(kWecomMsgSig, kWecomToken, kWecomMsgTs, "1372623148",
                                       kWecomEncrypt));
  CHECK_FALSE(wx::verify_msg_signature(kWecomMsgSig, kWecomToken, kWecomMsgTs, kWecomMsgNonce,
                                       flip(kWecomEncrypt, 5, 0x01)));
  CHECK_FALSE(wx::verify_signature(kOaPlainSig, kOaToken, kOaTs, "1320562133"));
}

// ---------------------------------------------------------------------------------------
// Keys

TEST_CASE("AesKey decodes the EncodingAESKey, and the IV is its first 16 bytes",
          "[wechat][crypto]") {
  const AesKey key = key_of(kWecomKey);
  CHECK(hex(key.key(), AesKey::kKeyLength) ==
        "8d69989bbaabe67328014c194631ad0719b3dca035b64023df292447aab60760");
  CHECK(hex(key.iv(), AesKey::kIvLength) == "8d69989bbaabe67328014c194631ad07");
  // Both sample keys end in a character whose low bits are set; they must still load.
  const AesKey oa = key_of(kOaKey);
  CHECK(hex(oa.key(), AesKey::kKeyLength) ==
        "69b71d79f8218a39259a7a29aabb2dbafc31cb3d35db7e39ebbf3d0010831051");
}

TEST_CASE("AesKey refuses a key of the wrong length, naming the length", "[wechat][crypto]") {
  for (const std::string& bad : {kWecomKey.substr(0, 42), kWecomKey + "A", std::string(),
                                 kWecomKey + "=", std::string(64, 'A')}) {
    std::string error;
    CHECK_FALSE(AesKey::parse(bad, error).has_value());
    CHECK_THAT(error, Catch::Contains("43 characters") &&
                          Catch::Contains("got " + std::to_string(bad.size())));
  }
}

TEST_CASE("AesKey refuses a key that is not base64", "[wechat][crypto]") {
  for (char c : {'*', '-', '_', ' ', '\0', '\xe4'}) {
    std::string bad = kWecomKey;
    bad[10] = c;
    std::string error;
    INFO("character code " << int(static_cast<unsigned char>(c)));
    CHECK_FALSE(AesKey::parse(bad, error).has_value());
    CHECK_THAT(error, Catch::Contains("not base64"));
  }
}

TEST_CASE("AesKey refuses a 43-character key that decodes to fewer than 32 bytes",
          "[wechat][crypto]") {
  // A trailing '=' makes "==" padding after the appended '=', so only 31 bytes.
  std::string bad = kWecomKey;
  bad.back() = '=';
  std::string error;
  CHECK_FALSE(AesKey::parse(bad, error).has_value());
  CHECK_THAT(error, Catch::Contains("32 bytes") && Catch::Contains("got 31"));
  // The key itself never appears in the error.
  CHECK_THAT(error, !Catch::Contains(kWecomKey.substr(0, 8)));
}

// ---------------------------------------------------------------------------------------
// Published ciphertexts

TEST_CASE("WeCom sample: echostr decrypts to the published plaintext", "[wechat][crypto]") {
  std::string message;
  REQUIRE(open_wecom(kWecomEchoStr, message) == CryptoStatus::ok);
  CHECK(message == kWecomEchoPlain);
}

TEST_CASE("WeCom sample: message decrypts to the published XML", "[wechat][crypto]") {
  std::string message;
  REQUIRE(open_wecom(kWecomEncrypt, message) == CryptoStatus::ok);
  CHECK(message == kWecomMsgPlain);
}

TEST_CASE("Official Account sample: message decrypts to the published XML", "[wechat][crypto]") {
  std::string message;
  REQUIRE(open_with(key_of(kOaKey), kOaEncrypt, kOaAppId, message) == CryptoStatus::ok);
  CHECK(message == kOaPlain);
}

TEST_CASE("decrypt alternating keys on one thread opens every sample, every time",
          "[wechat][crypto]") {
  // Each thread keeps its cipher context keyed for the last key: switching keys must re-key
  // it, and the same key again must start from the IV, not from the last call's CBC state.
  const AesKey oa = key_of(kOaKey);
  const AesKey wecom = key_of(kWecomKey);
  for (int round = 0; round < 3; ++round) {
    INFO("round " << round);
    std::string message;
    REQUIRE(open_with(oa, kOaEncrypt, kOaAppId, message) == CryptoStatus::ok);
    CHECK(message == kOaPlain);
    REQUIRE(open_with(oa, kOaEncrypt, kOaAppId, message) == CryptoStatus::ok);
    CHECK(message == kOaPlain);
    CHECK(open_with(oa, kWecomEncrypt, kWecomCorpId, message) != CryptoStatus::ok);
    REQUIRE(open_wecom(kWecomEncrypt, message) == CryptoStatus::ok);
    CHECK(message == kWecomMsgPlain);
    REQUIRE(open_with(wecom, kWecomEncrypt, kWecomCorpId, message) == CryptoStatus::ok);
    CHECK(message == kWecomMsgPlain);
  }
}

TEST_CASE("encrypt with the samples' prefixes reproduces the published ciphertexts",
          "[wechat][crypto]") {
  std::string out;
  REQUIRE(wx::encrypt(key_of(kWecomKey), kWecomEchoPlain, kWecomCorpId, prefix("c41b64491c2468d0"),
                      out) == CryptoStatus::ok);
  CHECK(out == kWecomEchoStr);
  REQUIRE(wx::encrypt(key_of(kWecomKey), kWecomMsgPlain, kWecomCorpId, prefix("0960688932c47ef1"),
                      out) == CryptoStatus::ok);
  CHECK(out == kWecomEncrypt);
  REQUIRE(wx::encrypt(key_of(kOaKey), kOaPlain, kOaAppId, prefix("89465c840c5f116f"), out) ==
          CryptoStatus::ok);
  CHECK(out == kOaEncrypt);
}

// ---------------------------------------------------------------------------------------
// Round trips

TEST_CASE("encrypt then decrypt returns the message, for edge sizes and Chinese text",
          "[wechat][crypto]") {
  const AesKey key = key_of(kWecomKey);
  std::mt19937 rng(20240607);
  std::vector<std::string> messages;
  for (std::size_t n : {0, 1, 12, 31, 32, 33, 44, 63, 64, 65, 1000}) {
    std::string m(n, '\0');
    for (char& c : m) c = static_cast<char>(rng() & 0xff);  // any bytes, NUL included
    messages.push_back(m);
  }
  messages.push_back("你好，世界！这是一条中文消息。");
  messages.push_back("<xml><Content><![CDATA[ding]]></Content></xml>");
  for (const std::string& receiver : {kWecomCorpId, kOaAppId, std::string(), std::string("w")}) {
    for (const std::string& m : messages) {
      INFO("message size " << m.size() << ", receiver '" << receiver << "'");
      std::string b64;
      REQUIRE(wx::encrypt(key, m, receiver, b64) == CryptoStatus::ok);
      const std::string raw = *wx::base64_decode(b64);
      // Padded to 32-byte blocks, always adding at least one pad byte.
      const std::size_t content = 20 + m.size() + receiver.size();
      CHECK(raw.size() % 32 == 0);
      CHECK(raw.size() == (content / 32 + 1) * 32);
      std::string back;
      REQUIRE(open_with(key, b64, receiver, back) == CryptoStatus::ok);
      CHECK(back == m);
    }
  }
}

TEST_CASE("encrypt without a prefix draws fresh random bytes each time", "[wechat][crypto]") {
  const AesKey key = key_of(kOaKey);
  std::string a, b;
  REQUIRE(wx::encrypt(key, "same", kOaAppId, a) == CryptoStatus::ok);
  REQUIRE(wx::encrypt(key, "same", kOaAppId, b) == CryptoStatus::ok);
  CHECK(a != b);
  std::string m;
  CHECK(open_with(key, a, kOaAppId, m) == CryptoStatus::ok);
  CHECK(m == "same");
}

TEST_CASE("a message aligned to 32 bytes gets a whole block of padding", "[wechat][crypto]") {
  // 20 header + 26 message + 18 receiver = 64: the envelope must grow to 96 bytes, and a
  // hand-built envelope with exactly that padding must decrypt to the same message.
  const std::string m(26, 'm');
  std::string b64;
  REQUIRE(wx::encrypt(key_of(kWecomKey), m, kWecomCorpId, prefix("RRRRRRRRRRRRRRRR"), b64) ==
          CryptoStatus::ok);
  CHECK(wx::base64_decode(b64)->size() == 96);
  CHECK(b64 == raw_encrypt(envelope(26, m + kWecomCorpId, std::string(32, '\x20'))));
}

// ---------------------------------------------------------------------------------------
// Refusals

TEST_CASE("decrypt refuses the right ciphertext for another receiver", "[wechat][crypto]") {
  const AesKey key = key_of(kOaKey);
  for (const std::string& other :
       {std::string("wx2c2769f8efd9abc3"), std::string("wx2c2769f8efd9abc"),
        std::string("wx2c2769f8efd9abc2 "), std::string("WX2C2769F8EFD9ABC2"), std::string(),
        kWecomCorpId}) {
    INFO("receiver '" << other << "'");
    std::string message;
    CHECK(open_with(key, kOaEncrypt, other, message) == CryptoStatus::receiver_mismatch);
    CHECK(message.empty());
  }
}

TEST_CASE("decrypt with the wrong key is refused, not garbage", "[wechat][crypto]") {
  std::string message;
  CHECK(open_with(key_of(kOaKey), kWecomEncrypt, kWecomCorpId, message) != CryptoStatus::ok);
  CHECK(message.empty());
}

TEST_CASE("decrypt refuses a tampered ciphertext", "[wechat][crypto]") {
  const std::size_t size = wx::base64_decode(kWecomEncrypt)->size();  // 352
  std::string message;
  // CBC: flipping ciphertext byte i flips plaintext byte i + 16. Byte 0 reaches the high
  // byte of the length field.
  CHECK(open_wecom(flip(kWecomEncrypt, 0, 0x80), message) == CryptoStatus::bad_length);
  CHECK(message.empty());
  // The last block's predecessor reaches the padding bytes (30 of them here).
  CHECK(open_wecom(flip(kWecomEncrypt, size - 17, 0x01), message) == CryptoStatus::bad_padding);
  // A byte that lands in the receiver id ("...c7" + 30 pad bytes: id ends at size - 31).
  CHECK(open_wecom(flip(kWecomEncrypt, size - 16 - 31, 0x01), message) ==
        CryptoStatus::receiver_mismatch);
  // The last block itself garbles the padding.
  CHECK(open_wecom(flip(kWecomEncrypt, size - 1, 0x01), message) != CryptoStatus::ok);
  CHECK(message.empty());
}

TEST_CASE("decrypt refuses a truncated ciphertext", "[wechat][crypto]") {
  const std::string raw = *wx::base64_decode(kWecomEncrypt);
  std::string message;
  // Not a whole number of blocks.
  CHECK(open_wecom(wx::base64_encode(raw.substr(0, raw.size() - 1)), message) ==
        CryptoStatus::bad_block_size);
  CHECK(open_wecom(wx::base64_encode(raw.substr(0, 15)), message) == CryptoStatus::bad_block_size);
  // Whole blocks, but cut: the length field now points past the data, or the pad is wrong.
  for (std::size_t keep = 16; keep < raw.size(); keep += 16) {
    INFO("kept " << keep << " bytes");
    CHECK(open_wecom(wx::base64_encode(raw.substr(0, keep)), message) != CryptoStatus::ok);
    CHECK(message.empty());
  }
  // Truncated base64 text.
  CHECK(open_wecom(kWecomEncrypt.substr(0, kWecomEncrypt.size() - 1), message) ==
        CryptoStatus::bad_base64);
  CHECK(open_wecom(std::string(), message) == CryptoStatus::bad_block_size);
}

TEST_CASE("decrypt refuses bad PKCS#7 padding", "[wechat][crypto]") {
  const std::string body = "hello" + kWecomCorpId;  // 20 + 23 = 43 bytes of content
  const std::string base = envelope(5, body, "");
  REQUIRE(base.size() == 43);
  std::string message;

  // The well-formed envelope opens (so the failures below are about the padding alone).
  REQUIRE(open_wecom(raw_encrypt(base + pkcs7_32(43)), message) == CryptoStatus::ok);
  CHECK(message == "hello");

  // Pad byte 0.
  CHECK(open_wecom(raw_encrypt(base + std::string(21, '\0')), message) ==
        CryptoStatus::bad_padding);
  CHECK(message.empty());
  // Pad bytes that disagree: last byte says 21, an earlier one does not.
  std::string uneven = base + pkcs7_32(43);
  uneven[50] = 20;
  CHECK(open_wecom(raw_encrypt(uneven), message) == CryptoStatus::bad_padding);
  // Pad value 33 (> 32) in a 96-byte envelope whose last 33 bytes are all 33.
  CHECK(open_wecom(raw_encrypt(base.substr(0, 20) + std::string(43, 'x') + std::string(33, '!')),
                   message) == CryptoStatus::bad_padding);
  // Pad value 32 on a single 16-byte block: larger than the data.
  CHECK(open_wecom(raw_encrypt(std::string(16, ' ')), message) == CryptoStatus::bad_padding);
  // AES's own 16-byte PKCS#7 still decodes (value 1..32, all equal): 43 + 5 = 48.
  CHECK(open_wecom(raw_encrypt(base + std::string(5, '\x05')), message) == CryptoStatus::ok);
  CHECK(message == "hello");
}

TEST_CASE("decrypt refuses a length field larger than the data", "[wechat][crypto]") {
  std::string message;
  const std::string body = "hello" + kWecomCorpId;  // 23 bytes after the header
  for (std::uint32_t length : {24u, 0x100u, 0x7fffffffu, 0xffffffffu}) {
    INFO("length field " << length);
    const std::string env = envelope(length, body, "");
    CHECK(open_wecom(raw_encrypt(env + pkcs7_32(env.size())), message) == CryptoStatus::bad_length);
    CHECK(message.empty());
  }
  // Length 23 takes the whole body as the message, leaving an empty receiver id: that
  // is within bounds, so it is the receiver check that refuses it.
  const std::string all = envelope(23, body, "");
  CHECK(open_wecom(raw_encrypt(all + pkcs7_32(all.size())), message) ==
        CryptoStatus::receiver_mismatch);
  CHECK(open_with(key_of(kWecomKey), raw_encrypt(all + pkcs7_32(all.size())), "", message) ==
        CryptoStatus::ok);
  CHECK(message == body);
}

TEST_CASE("decrypt refuses an envelope shorter than its 20-byte header", "[wechat][crypto]") {
  std::string message;
  for (std::size_t content : {0u, 1u, 16u, 19u}) {
    INFO("content bytes " << content);
    const std::string env(content, 'R');
    CHECK(open_wecom(raw_encrypt(env + pkcs7_32(content)), message) == CryptoStatus::bad_length);
  }
  // Exactly 20 bytes (empty message, empty receiver) is a valid envelope.
  CHECK(open_with(key_of(kWecomKey), raw_encrypt(envelope(0, "", pkcs7_32(20))), "", message) ==
        CryptoStatus::ok);
  CHECK(message.empty());
}

TEST_CASE("decrypt refuses text that is not padded standard base64", "[wechat][crypto]") {
  std::string message;
  std::string url_safe = kWecomEncrypt;
  for (char& c : url_safe) c = c == '+' ? '-' : c == '/' ? '_' : c;
  REQUIRE(url_safe != kWecomEncrypt);
  std::string with_space = kWecomEncrypt;
  with_space[10] = ' ';  // what '+' becomes when a query string is decoded twice
  std::string with_newline = kWecomEncrypt;
  with_newline.insert(76, "\n");
  std::string stray_pad = kWecomEncrypt;
  stray_pad[8] = '=';
  for (const std::string& bad :
       {url_safe, with_space, with_newline, stray_pad,
        kWecomEncrypt.substr(0, kWecomEncrypt.size() - 2),  // padding dropped
        kWecomEncrypt + "=", kWecomEncrypt + "====", std::string("===="), std::string("A==="),
        std::string("AAA"), std::string(1, '\0') + "AAA"}) {
    INFO("input '" << bad.substr(0, 16) << "...' size " << bad.size());
    CHECK(open_wecom(bad, message) == CryptoStatus::bad_base64);
    CHECK(message.empty());
  }
}

TEST_CASE("base64 round-trips the RFC 4648 test vectors", "[wechat][crypto]") {
  const std::pair<std::string, std::string> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : vectors) {
    CHECK(wx::base64_encode(plain) == encoded);
    CHECK(wx::base64_decode(encoded) == plain);
  }
  std::string all(256, '\0');
  for (int i = 0; i < 256; ++i) all[static_cast<std::size_t>(i)] = static_cast<char>(i);
  CHECK(wx::base64_decode(wx::base64_encode(all)) == all);
}

TEST_CASE("base64_decode refuses any byte outside the alphabet, at any place", "[wechat][crypto]") {
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  // A full group, a final group of 3 characters (one '=') and one of 2 ('==').
  const std::string samples[] = {"Zm9vYmFy", "Zm9vYmE=", "Zm9vYg=="};
  REQUIRE(wx::base64_decode(samples[0]) == std::string("foobar"));
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    // '=' is padding where it ends the text; a stray one is tested with decrypt above.
    if (c == '=' || alphabet.find(c) != std::string::npos) continue;
    for (const std::string& sample : samples) {
      const std::size_t data =
          sample.find('=') == std::string::npos ? sample.size() : sample.find('=');
      for (std::size_t k = 0; k < data; ++k) {
        std::string bad = sample;
        bad[k] = c;
        INFO("byte " << b << " at " << k << " of " << sample);
        CHECK_FALSE(wx::base64_decode(bad).has_value());
      }
    }
  }
}

TEST_CASE("to_string names every status", "[wechat][crypto]") {
  CHECK(std::string(wx::to_string(CryptoStatus::ok)) == "ok");
  CHECK(std::string(wx::to_string(CryptoStatus::bad_base64)) == "bad_base64");
  CHECK(std::string(wx::to_string(CryptoStatus::bad_block_size)) == "bad_block_size");
  CHECK(std::string(wx::to_string(CryptoStatus::bad_padding)) == "bad_padding");
  CHECK(std::string(wx::to_string(CryptoStatus::bad_length)) == "bad_length");
  CHECK(std::string(wx::to_string(CryptoStatus::receiver_mismatch)) == "receiver_mismatch");
  CHECK(std::string(wx::to_string(CryptoStatus::message_too_long)) == "message_too_long");
  CHECK(std::string(wx::to_string(CryptoStatus::crypto_failure)) == "crypto_failure");
}
