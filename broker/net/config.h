#pragma once
// What depotd's network layer is configured with (depotd's flags fill it).

#include "protocol/frame_reader.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace depot::net {

struct ServerConfig {
    std::string serverName = "depotd";
    std::size_t maxFrameBytes = protocol::DEFAULT_MAX_FRAME_BYTES;
    // Proposed to clients; the lower non-zero of both sides wins. A peer silent for two
    // intervals is dead: its connection closes and its unacked messages are requeued.
    std::uint32_t heartbeatSeconds = 60;
    // A connection that has not said hello by then is closed (RabbitMQ's handshake_timeout).
    std::chrono::milliseconds handshakeTimeout{10'000};
    std::string username = "guest";
    std::string password = "guest";
    // A connection's unsent bytes above which its consumers stop receiving, and below which
    // they start again: a client that does not read cannot make the broker buffer without limit.
    // Small enough that a batch is still in the CPU's cache when the kernel copies it (measured:
    // 4 MiB / 1 MiB marks gave 16 KiB bodies 38k msgs/s, these 60-70k).
    std::size_t outboxHighWater = std::size_t{512} << 10;
    std::size_t outboxLowWater = std::size_t{128} << 10;
    // A write that has not completed in this long means the client stopped reading (while
    // perhaps still sending heartbeats): its connection closes and its unacked are requeued.
    std::chrono::milliseconds writeStallTimeout{60'000};
    // The memory alarm, like RabbitMQ's high watermark: when the bytes held for messages (bodies
    // ready in queues plus what waits in sockets' outboxes) pass this, connections that publish
    // are blocked (told with a `blocked` frame; the broker stops reading them) until the figure
    // falls below 80 % of it. Nothing is dropped. 0 = no limit.
    std::size_t memoryLimitBytes = 0;
    // Where durable definitions (definitions.h) and persistent messages of durable queues
    // (durable_messages.h) are kept; empty = nothing on disk.
    std::filesystem::path dataDir;
};

} // namespace depot::net
