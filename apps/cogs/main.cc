// cogs: the command-line client (cogs/cli). `cogs --help` lists the commands.
#include <string>
#include <vector>

#include "cogs/cli/cli.h"

int main(int argc, char** argv) { return cogs::cli::RunCli(std::vector<std::string>(argv, argv + argc)); }
