#pragma once
// `depot-bench e2e`: messages through a real broker over TCP. Starts depotd (found next to
// depot-bench) on a loopback port unless --target or --compare name brokers (depot:// or
// amqp://, RabbitMQ), then runs each scenario (publisher and consumer connections, each with its
// own threads) against each target in turn, and what loopback TCP alone allows to compare with
// (bench/loopback.h: the ceiling, a bare relay's ceiling, and the RPC floor).

namespace CLI {
class App;
}

namespace depot::bench {

void addE2eCommand(CLI::App& app);

} // namespace depot::bench
