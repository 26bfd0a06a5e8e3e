#pragma once
// `depot-bench e2e`: messages through a real broker over TCP. Starts depotd (found next to
// depot-bench) on a loopback port unless --target names a broker, then runs one publisher and
// one consumer (each a client connection with its own threads) per scenario, and a raw loopback
// TCP transfer of the same bytes as the ceiling to compare with.

namespace CLI {
class App;
}

namespace depot::bench {

void addE2eCommand(CLI::App& app);

} // namespace depot::bench
