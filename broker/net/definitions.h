#pragma once
// depotd's durable definitions on disk (--data-dir): the durable exchanges, durable
// non-exclusive queues, and bindings between durable ends, of every vhost, as RabbitMQ keeps
// them. One file, <data-dir>/definitions (protocol/definitions.capnp), rewritten whole and
// replaced atomically (a temporary file, fsync, rename, fsync of the directory) each time what
// it would hold changes, before the client is told the change succeeded: a declare that was
// answered survives a kill -9.

#include "broker/core/broker.h"

#include <cstddef>
#include <filesystem>
#include <string>

namespace depot::net {

class DefinitionsFile {
public:
    explicit DefinitionsFile(std::filesystem::path file) : file_(std::move(file)) {}

    struct Loaded {
        std::size_t exchanges = 0;
        std::size_t queues = 0;
        std::size_t bindings = 0;
    };
    // Declares into `broker` what the file holds (nothing when there is no file yet). Throws
    // std::runtime_error naming the file when it cannot be read or is damaged, or when a
    // definition is refused: depotd then does not start, rather than run with half its
    // definitions.
    Loaded load(core::Broker& broker, core::TimePoint now);

    // Writes the file when the broker's durable definitions differ from what it holds. Throws
    // std::runtime_error (disk full, permissions); the old file is then intact.
    void saveIfChanged(core::Broker& broker);

    const std::filesystem::path& file() const { return file_; }

private:
    std::filesystem::path file_;
    std::string saved_; // the bytes of the file as last read or written
};

} // namespace depot::net
