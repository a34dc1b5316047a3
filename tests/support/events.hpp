// Builders for the generic-event JSON bodies the integration tests send.
#pragma once

#include <string>

namespace botgate::test {

// {"id":..,"conversation":..,"sender":..,"type":"message","text":..,"seq":..}
std::string event_json(const std::string& id, const std::string& conversation, int seq,
                       const std::string& text = "hello");

}  // namespace botgate::test
