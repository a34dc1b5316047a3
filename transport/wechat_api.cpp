#include "transport/wechat_api.hpp"

#include <openssl/sha.h>
#include <simdjson.h>

#include <limits>

#include "core/json.hpp"
#include "transport/signature.hpp"

namespace botgate::wechat {
namespace {

namespace od = simdjson::ondemand;

void append_query_value(std::string& out, std::string_view v) {
  constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : v) {
    const bool plain = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                       c == '-' || c == '_' || c == '.' || c == '~';
    if (plain) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
}

}  // namespace

std::string token_target(AccountApi api, std::string_view base_path, std::string_view id,
                         std::string_view secret) {
  std::string out(base_path);
  if (api == AccountApi::official_account) {
    out += "/cgi-bin/token?grant_type=client_credential&appid=";
    append_query_value(out, id);
    out += "&secret=";
  } else {
    out += "/cgi-bin/gettoken?corpid=";
    append_query_value(out, id);
    out += "&corpsecret=";
  }
  append_query_value(out, secret);
  return out;
}

std::string send_target(AccountApi api, std::string_view base_path, std::string_view access_token) {
  std::string out(base_path);
  out += api == AccountApi::official_account ? "/cgi-bin/message/custom/send?access_token="
                                             : "/cgi-bin/kf/send_msg?access_token=";
  append_query_value(out, access_token);
  return out;
}

std::string send_body(AccountApi api, std::string_view touser, std::string_view msgtype,
                      std::string_view content, std::string_view open_kfid,
                      std::string_view msgid) {
  std::string out = "{\"touser\":";
  append_json_string(out, touser);
  if (api == AccountApi::wecom_kf) {
    out += ",\"open_kfid\":";
    append_json_string(out, open_kfid);
    out += ",\"msgid\":";
    append_json_string(out, msgid);
  }
  if (msgtype == "text") {
    out += ",\"msgtype\":\"text\",\"text\":{\"content\":";
    append_json_string(out, content);
    out += "}}";
    return out;
  }
  out += ",\"msgtype\":";
  append_json_string(out, msgtype);
  out += ',';
  append_json_string(out, msgtype);
  out += ':';
  out += content;
  out += '}';
  return out;
}

std::string kf_msgid(std::string_view source, std::string_view id) {
  std::string key(source);
  key.push_back('\0');
  key.append(id);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), digest);
  std::string out;
  append_hex(out, digest, 16);  // the first 128 bits
  return out;
}

ApiAnswer parse_api_answer(std::string_view body) {
  ApiAnswer a;
  const auto fail = [&a](std::string why) {
    a.problem = std::move(why);
    return a;
  };
  thread_local od::parser parser;
  simdjson::padded_string padded(body);
  od::document doc;
  od::object obj;
  if (parser.iterate(padded).get(doc) || doc.get_object().get(obj)) {
    return fail("the answer is not a JSON object");
  }
  for (auto field : obj) {
    std::string_view key;
    if (field.unescaped_key().get(key)) return fail("the answer is not a JSON object");
    od::value v;
    if (field.value().get(v)) return fail("the answer is not a JSON object");
    if (key == "errcode") {
      std::int64_t n = 0;
      if (v.get_int64().get(n)) return fail("its errcode is not an integer");
      a.errcode = static_cast<long>(n);
      a.has_errcode = true;
    } else if (key == "errmsg") {
      std::string_view s;
      if (v.get_string().get(s)) return fail("its errmsg is not a string");
      a.errmsg = std::string(s);
    } else if (key == "access_token") {
      std::string_view s;
      if (v.get_string().get(s)) return fail("its access_token is not a string");
      a.access_token = std::string(s);
    } else if (key == "expires_in") {
      // As a double: integers, fractions and integers beyond int64 alike.
      double d = 0;
      if (v.get_double().get(d)) return fail("its expires_in is not a number");
      constexpr double kLimit = 9.2e18;  // inside the int64 range
      a.expires_in = d >= kLimit    ? std::numeric_limits<std::int64_t>::max()
                     : d <= -kLimit ? std::numeric_limits<std::int64_t>::min()
                                    : static_cast<std::int64_t>(d);
      a.has_expires_in = true;
    }
  }
  a.parsed = true;
  return a;
}

std::string token_problem(const ApiAnswer& a) {
  if (a.access_token.empty()) return "the answer has no access_token";
  if (a.access_token.size() > kMaxAccessToken) {
    return "its access_token is " + std::to_string(a.access_token.size()) + " bytes long, over " +
           std::to_string(kMaxAccessToken);
  }
  if (!a.has_expires_in) return "the answer has no expires_in";
  if (a.expires_in <= 0)
    return "its expires_in " + std::to_string(a.expires_in) + " is not positive";
  return {};
}

std::string describe(const ApiAnswer& a) {
  std::string out = "errcode " + std::to_string(a.errcode);
  if (!a.errmsg.empty()) out += ": " + a.errmsg;
  return out;
}

}  // namespace botgate::wechat
