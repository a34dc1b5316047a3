// Builders for the generic-event JSON bodies the integration tests send.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace botgate::test {

// {"id":..,"conversation":..,"sender":..,"type":"message","text":..,"seq":..}
std::string event_json(const std::string& id, const std::string& conversation, int seq,
                       const std::string& text = "hello");

// The first `n` of a list of ids, for a failure message: "a b c ... (N in all)".
std::string head(const std::vector<std::string>& v, std::size_t n = 10);

}  // namespace botgate::test
