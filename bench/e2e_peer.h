#pragma once
// The publisher and the consumer of `depot-bench e2e` as processes of their own: the bench
// starts itself twice (the hidden `e2e-peer` subcommand) so that, as in a real deployment, the
// broker, the publishing process and the consuming process each have their own address space
// and threads, all on this machine's cores.
//
// The consumer says "ready" once its consumers are registered, the publisher is started then;
// each process reads the (system-wide) monotonic clock itself: the publisher just before its
// first publish, the consumer at its last delivery. The difference is the scenario's time.

#include <CLI/CLI.hpp>

#include <cstddef>
#include <string>
#include <vector>

namespace depot::bench {

struct PeerOutcome {
    std::size_t received = 0;
    double seconds = 0;             // from the first publish to the last delivery
    double publishSeconds = 0;      // the publisher's own time (with confirms: to the last one)
    std::size_t nacked = 0;         // confirms that were nacks
    double publisherCpuSeconds = 0; // user + system, over the whole process
    double consumerCpuSeconds = 0;
    bool completed = false; // every expected delivery arrived and both processes exited 0
};

// Runs one consumer process (`consumerArgs`, after `e2e-peer consume`) and, once it is ready,
// one publisher process (`publisherArgs`, after `e2e-peer publish`).
PeerOutcome runPeers(const std::vector<std::string>& consumerArgs,
                     const std::vector<std::string>& publisherArgs);

void addPeerCommand(CLI::App& app);

} // namespace depot::bench
