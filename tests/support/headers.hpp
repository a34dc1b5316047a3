// Header-name helpers shared by the test client and the test backend.
#pragma once

#include <cctype>
#include <map>
#include <string>
#include <string_view>

namespace botgate::test {

inline std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The value of a header stored under its lower-case name, or "".
inline std::string header_value(const std::map<std::string, std::string>& headers,
                                const std::string& lower_name) {
  auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

}  // namespace botgate::test
