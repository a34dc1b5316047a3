// A running botgate configured for a test: config written to the test's temp dir,
// the process started with `--config`, and its port read from the listening line.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

namespace botgate::test {

class Gateway {
 public:
  // Writes `config_text` to <dir>/<name>.toml, starts `binary --config` on it with
  // stdout and stderr in <dir>/<name>.log, and waits for the listening line.
  Gateway(const std::string& binary, const TempDir& dir, const std::string& config_text,
          const std::string& name = "botgate");

  std::uint16_t port() { return process_->port(); }
  Process& process() { return *process_; }
  const std::filesystem::path& config_path() const { return config_path_; }
  std::string log() const { return process_->log(); }

 private:
  std::filesystem::path config_path_;
  std::unique_ptr<Process> process_;
};

}  // namespace botgate::test
