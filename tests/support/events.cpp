#include "tests/support/events.hpp"

#include <fmt/format.h>

namespace botgate::test {

std::string event_json(const std::string& id, const std::string& conversation, int seq,
                       const std::string& text) {
  // The test ids, conversations and texts are plain ASCII without quotes or
  // backslashes, so no escaping is needed.
  return fmt::format(
      R"({{"id":"{}","conversation":"{}","sender":"user-{}","type":"message","text":"{}","seq":{}}})",
      id, conversation, conversation, text, seq);
}

}  // namespace botgate::test
