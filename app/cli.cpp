#include "app/cli.hpp"

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

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

enum class Action { help, version, check, run };

struct Verb {
  std::string_view name;
  Action action;
  bool takes_file;
};

constexpr Verb kVerbs[] = {
    {"--help", Action::help, false},       {"-h", Action::help, false},
    {"--version", Action::version, false}, {"check-config", Action::check, true},
    {"--config", Action::run, true},
};

struct Command {
  Action action;
  std::string file;  // check, run
};

// The command `args` (argv without the program name) asks for, or what is wrong with them.
std::variant<Command, std::string> parse_command(const std::vector<std::string_view>& args) {
  if (args.empty()) return std::string("no command given");
  const std::string_view first = args[0];
  const Verb* verb = std::find_if(std::begin(kVerbs), std::end(kVerbs),
                                  [&](const Verb& v) { return v.name == first; });
  if (verb == std::end(kVerbs)) {
    const std::string quoted = "'" + std::string(first) + "'";
    if (first.starts_with("--config="))
      return "unknown option " + quoted + " (write '--config FILE')";
    if (first.starts_with("-")) return "unknown option " + quoted;
    return "unknown command " + quoted;
  }
  const std::size_t wanted = verb->takes_file ? 2 : 1;
  if (args.size() < wanted) return std::string(verb->name) + " needs a file";
  if (args.size() > wanted) return "unexpected argument '" + std::string(args[wanted]) + "'";
  return Command{verb->action, verb->takes_file ? std::string(args[1]) : std::string()};
}

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
  const auto parsed = parse_command(std::vector<std::string_view>(argv + 1, argv + argc));
  if (const auto* wrong = std::get_if<std::string>(&parsed)) {
    std::fprintf(stderr, "botgate: %s\n", wrong->c_str());
    std::fputs(kUsage, stderr);
    return 2;
  }
  const Command& cmd = std::get<Command>(parsed);
  ConfigResult result;
  switch (cmd.action) {
    case Action::help:
      std::fputs(kUsage, stdout);
      return 0;
    case Action::version:
      std::printf("botgate %s\n", BOTGATE_VERSION);
      return 0;
    case Action::check:
      if (load_or_report(cmd.file, result) == nullptr) return 1;
      std::printf("%s: ok\n", cmd.file.c_str());
      return 0;
    case Action::run: {
      block_stop_signals();  // from before the config is read: a stop while starting is graceful
      const Config* config = load_or_report(cmd.file, result);
      if (config == nullptr) return 1;
      return run_gateway(*config);
    }
  }
  return 2;
}

}  // namespace botgate
