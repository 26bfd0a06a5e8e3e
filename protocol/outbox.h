#pragma once
// Frames waiting to be written to one socket, batched so that one gather write sends many
// frames. Small parts (segment tables, frame headers, small bodies) are copied into one
// contiguous buffer; a large segment (a message body referenced with referenceExternalData) is
// sent from where it lives, kept alive by the keepAlive handle until its write completes.
// Two batches alternate: one being written, one filling.

#include <capnp/message.h>

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

namespace depot::protocol {

class Outbox {
public:
    // Copies the frame built in `builder` (which may then be destroyed), except the segment
    // that starts at `external` (a body adopted with referenceExternalData), which is sent from
    // where it lives and kept alive by `keepAlive` until written.
    void append(capnp::MessageBuilder& builder, const void* external = nullptr,
                std::shared_ptr<const void> keepAlive = {});

    bool hasPending() const { return !pending_.pieces.empty(); }
    std::size_t pendingBytes() const { return pending_.bytes; }
    bool writing() const { return writing_; }
    // Bytes appended but not yet written: pending and in flight.
    std::size_t bufferedBytes() const { return pending_.bytes + inFlight_.bytes; }

    // Moves what is pending into flight and returns it as ranges for one gather write; they
    // stay valid until finishWrite(). Only one write at a time.
    const std::vector<std::span<const std::byte>>& startWrite();
    void finishWrite();

private:
    struct Piece {
        const std::byte* external; // nullptr: `size` bytes at `offset` in `copied`
        std::size_t offset;
        std::size_t size;
    };
    struct Batch {
        std::vector<std::byte> copied;
        std::vector<Piece> pieces;
        std::vector<std::shared_ptr<const void>> keepAlive;
        std::vector<std::span<const std::byte>> ranges;
        std::size_t bytes = 0;
        void clear();
    };
    void copy(Batch& batch, const void* data, std::size_t size);

    Batch pending_;
    Batch inFlight_;
    bool writing_ = false;
};

} // namespace depot::protocol
