#pragma once
// `depot-bench recovery`: how long depotd takes to come back with a backlog of persistent
// messages. Fills a durable queue with N confirmed persistent messages, kill -9s depotd,
// restarts it on the same data dir and times it until it listens (recovery comes first), then
// drains the queue to check that every message came back.

namespace CLI {
class App;
}

namespace depot::bench {

void addRecoveryCommand(CLI::App& app);

} // namespace depot::bench
