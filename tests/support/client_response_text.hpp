// Text of an HttpClient answer, for test failure messages (Catch's INFO).
#pragma once

#include <string>

#include "transport/http_client.hpp"

namespace botgate::test {

inline const char* error_name(http::ClientResponse::Error e) {
  using Error = http::ClientResponse::Error;
  switch (e) {
    case Error::none:
      return "none";
    case Error::connect:
      return "connect";
    case Error::timeout:
      return "timeout";
    case Error::io:
      return "io";
  }
  return "?";
}

// "error=... status=... message=... body=<first 200 bytes>"
inline std::string describe(const http::ClientResponse& r) {
  return std::string("error=") + error_name(r.error) + " status=" + std::to_string(r.status) +
         " message=" + r.message + " body=" + r.body.substr(0, 200);
}

}  // namespace botgate::test
