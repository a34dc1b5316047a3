// A running botgate configured for a test: config written to the test's temp dir,
// the process started with `--config`, and its port read from the listening line.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

namespace botgate::test {

class Gateway {
 public:
  // Writes `config_text` to <dir>/<name>.toml, starts `binary --config` on it with
  // stdout and stderr in <dir>/<name>.log, and waits for the listening line.
  Gateway(const std::string& binary, const TempDir& dir, const std::string& config_text,
          const std::string& name = "botgate");

  // Starts the same binary again on the same config file, hence on the same queue
  // dir and, when the config names a fixed listen port, on the same port. Output goes
  // to <config dir>/<log_name>.log. Throws std::logic_error while this process still
  // runs: stop it (kill() or a signal, then wait_exit()) first.
  std::unique_ptr<Gateway> restart(const std::string& log_name) const;

  std::uint16_t port() { return process_->port(); }
  Process& process() { return *process_; }
  const std::filesystem::path& config_path() const { return config_path_; }
  std::string log() const { return process_->log(); }

 private:
  Gateway(std::string binary, std::filesystem::path config_path,
          const std::filesystem::path& log_path);

  std::string binary_;
  std::filesystem::path config_path_;
  std::unique_ptr<Process> process_;
};

// A port on 127.0.0.1 that is free right now, for a gateway that has to come back on
// the same port after a restart. It lies below the kernel's ephemeral port range when
// there is room, so no outgoing connection (a client reconnecting while botgate is
// down) can be given it as its local port in the meantime.
std::uint16_t free_listen_port();

// A script in `dir` that runs `binary` under `prlimit <limits>` (util-linux, Essential on
// Debian), e.g. "--nofile=200", to be the binary of a Gateway.
std::string limited_binary(const TempDir& dir, const std::string& binary,
                           const std::string& limits);

// The lines of `text` (a gateway's log) containing `needle`.
std::vector<std::string> lines_with(const std::string& text, const std::string& needle);

}  // namespace botgate::test
