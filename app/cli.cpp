#include "app/cli.hpp"

#include <cstdio>
#include <string>
#include <string_view>
#include <variant>

#include "app/config.hpp"
#include "app/gateway.hpp"

namespace botgate {
namespace {

constexpr const char* kUsage =
    "usage:\n"
    "  botgate --config FILE        run the gateway\n"
    "  botgate check-config FILE    validate FILE; exit 0 if valid, 1 with each error if not\n"
    "  botgate --version            print the version\n"
    "  botgate --help               print this help\n"
    "\n"
    "environment:\n"
    "  BOTGATE_ADMIN_TOKEN          overrides [server] admin_token\n";

// Prints every error as FILE:LINE: KEY: MESSAGE. Returns the config when valid.
const Config* load_or_report(const std::string& path, ConfigResult& result) {
  result = load_config(path);
  if (auto* errors = std::get_if<std::vector<ConfigError>>(&result)) {
    for (const auto& e : *errors) std::fprintf(stderr, "%s\n", format_error(path, e).c_str());
    std::fprintf(stderr, "%s: %zu error(s)\n", path.c_str(), errors->size());
    return nullptr;
  }
  return &std::get<Config>(result);
}

}  // namespace

int cli_main(int argc, char** argv) {
  const std::string_view cmd = argc > 1 ? argv[1] : "";
  if (argc == 2 && (cmd == "--help" || cmd == "-h")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (argc == 2 && cmd == "--version") {
    std::printf("botgate %s\n", BOTGATE_VERSION);
    return 0;
  }
  ConfigResult result;
  if (argc == 3 && cmd == "check-config") {
    if (load_or_report(argv[2], result) == nullptr) return 1;
    std::printf("%s: ok\n", argv[2]);
    return 0;
  }
  if (argc == 3 && cmd == "--config") {
    block_stop_signals();  // from before the config is read: a stop while starting is graceful
    const Config* config = load_or_report(argv[2], result);
    if (config == nullptr) return 1;
    return run_gateway(*config);
  }
  std::fputs(kUsage, stderr);
  return 2;
}

}  // namespace botgate
