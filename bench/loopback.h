#pragma once
// What loopback TCP alone allows on this machine, measured in the same run as the brokers so
// that their figures can be read against it:
//
// - the ceiling: the bytes through one socket, 64 KiB writes, one thread writing and one
//   reading;
// - the relay ceiling: the same bytes through a relay that does nothing but forward them from
//   one socket to another, as a broker must at least do. Each byte crosses loopback twice (four
//   kernel copies against the ceiling's two), so no broker over TCP can beat this figure;
// - the RPC floor: sequential round trips of one message through such a relay to an echo
//   and back, two hops each way, as an RPC through a broker makes them, without a broker's work
//   or a client library's threads.

#include <cstddef>
#include <vector>

namespace depot::bench {

// Seconds to move `bytes` through one loopback connection.
double loopbackSeconds(std::size_t bytes);
// Seconds to move `bytes` through a forwarding relay (two loopback connections).
double relaySeconds(std::size_t bytes);

struct RoundTrips {
    double p50 = 0, p99 = 0, p999 = 0; // microseconds
};
RoundTrips percentiles(std::vector<double> micros);
// `calls` sequential round trips of a `messageBytes` message: caller -> relay -> echo -> relay
// -> caller.
RoundTrips relayRoundTrips(std::size_t messageBytes, std::size_t calls);

} // namespace depot::bench
