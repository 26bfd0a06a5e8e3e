#pragma once
// Starts a server program for a benchmark, its stdout and stderr in a log file.

#include <sys/types.h>

#include <string>
#include <vector>

namespace depot::bench {

// Runs args[0] with `args`, output to `logPath` (truncated); returns its pid. Throws
// std::runtime_error when it cannot be started.
pid_t spawnLogged(std::vector<std::string> args, const std::string& logPath);

} // namespace depot::bench
