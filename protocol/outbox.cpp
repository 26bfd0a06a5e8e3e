#include "protocol/outbox.h"

#include "protocol/framing_table.h"

namespace depot::protocol {

void Outbox::Batch::clear() {
    copied.clear();
    pieces.clear();
    keepAlive.clear();
    ranges.clear();
    bytes = 0;
}

void Outbox::copy(Batch& batch, const void* data, std::size_t size) {
    if (size == 0)
        return;
    const std::size_t offset = batch.copied.size();
    const auto* bytes = static_cast<const std::byte*>(data);
    batch.copied.insert(batch.copied.end(), bytes, bytes + size); // no zero-fill first
    // Adjacent copies merge into one piece: fewer ranges for the gather write.
    if (!batch.pieces.empty() && batch.pieces.back().external == nullptr &&
        batch.pieces.back().offset + batch.pieces.back().size == offset)
        batch.pieces.back().size += size;
    else
        batch.pieces.push_back(Piece{nullptr, offset, size});
    batch.bytes += size;
}

void Outbox::append(capnp::MessageBuilder& builder, const void* external,
                    std::shared_ptr<const void> keepAlive) {
    const kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments =
        builder.getSegmentsForOutput();
    const FramingTable table(segments);
    copy(pending_, table.data(), table.bytes());

    bool referenced = false;
    for (std::size_t i = 0; i < segments.size(); ++i) {
        const auto* data = reinterpret_cast<const std::byte*>(segments[i].begin());
        const std::size_t size = segments[i].size() * sizeof(capnp::word);
        if (external != nullptr && static_cast<const void*>(data) == external) {
            pending_.pieces.push_back(Piece{data, 0, size});
            pending_.bytes += size;
            referenced = true;
        } else {
            copy(pending_, data, size);
        }
    }
    if (referenced)
        pending_.keepAlive.push_back(std::move(keepAlive));
}

const std::vector<std::span<const std::byte>>& Outbox::startWrite() {
    std::swap(pending_, inFlight_);
    pending_.clear();
    writing_ = true;
    inFlight_.ranges.clear();
    for (const Piece& piece : inFlight_.pieces)
        inFlight_.ranges.emplace_back(
            piece.external != nullptr ? piece.external : inFlight_.copied.data() + piece.offset,
            piece.size);
    return inFlight_.ranges;
}

void Outbox::finishWrite() {
    inFlight_.clear();
    writing_ = false;
}

} // namespace depot::protocol
