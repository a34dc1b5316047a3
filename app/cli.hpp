// Command-line entry: `--config FILE`, `check-config FILE`, `--version`, `--help`.
#pragma once

namespace botgate {

int cli_main(int argc, char** argv);

}  // namespace botgate
