#include "tests/support/gateway.hpp"

namespace botgate::test {

Gateway::Gateway(const std::string& binary, const TempDir& dir, const std::string& config_text,
                 const std::string& name)
    : config_path_(dir.write(name + ".toml", config_text)) {
  auto log_path = dir / (name + ".log");
  process_ = std::make_unique<Process>(
      std::vector<std::string>{binary, "--config", config_path_.string()}, log_path, log_path);
  process_->port();  // throws, with the log, if botgate never listens
}

}  // namespace botgate::test
