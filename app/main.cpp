// botgate: a high-availability event gateway for chatbots.
#include "app/cli.hpp"

int main(int argc, char** argv) {
  return botgate::cli_main(argc, argv);
}
