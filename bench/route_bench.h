#pragma once
// `depot-bench route`: in-process benchmarks of the routing core, with no sockets and no runtime.
// For each exchange type and binding count it builds a fresh core::Broker and measures the
// routing decision (Vhost::route), the same with cold keys that defeat the topic exchange's key
// cache, Channel::publish into queues drained by no-ack consumers, and heap bytes per binding.
// Figures are also quoted as ratios to a std::unordered_map lookup measured in the same run.

namespace CLI {
class App;
}

namespace depot::bench {

// Registers the `route` subcommand (its options and the code it runs) on `app`.
void addRouteCommand(CLI::App& app);

} // namespace depot::bench
