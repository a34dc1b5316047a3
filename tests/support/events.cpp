#include "tests/support/events.hpp"

#include <fmt/format.h>

#include <sstream>

namespace botgate::test {

std::string event_json(const std::string& id, const std::string& conversation, int seq,
                       const std::string& text) {
  // The test ids, conversations and texts are plain ASCII without quotes or
  // backslashes, so no escaping is needed.
  return fmt::format(
      R"({{"id":"{}","conversation":"{}","sender":"user-{}","type":"message","text":"{}","seq":{}}})",
      id, conversation, conversation, text, seq);
}

std::string head(const std::vector<std::string>& v, std::size_t n) {
  std::ostringstream os;
  for (std::size_t i = 0; i < v.size() && i < n; ++i) os << v[i] << ' ';
  if (v.size() > n) os << "... (" << v.size() << " in all)";
  return os.str();
}

}  // namespace botgate::test
