#pragma once
// `depot-bench store`: the message store (broker/store) on its own, on this machine's disk:
// persistent 100-byte messages written, enqueued and synced in groups of 1, 10, 100 and 1,000
// (group commit: one fsync per group), next to the raw cost of an fdatasync measured in the
// same run. Says what durability can cost before depotd uses the store.

namespace CLI {
class App;
}

namespace depot::bench {

void addStoreCommand(CLI::App& app);

} // namespace depot::bench
