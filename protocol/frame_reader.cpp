#include "protocol/frame_reader.h"

#include <kj/exception.h>

#include <algorithm>
#include <cstring>

namespace depot::protocol {

namespace {
constexpr std::size_t WORD = sizeof(capnp::word);
}

FrameReader::FrameReader(std::size_t maxFrameBytes) : maxFrameBytes_(maxFrameBytes) {}

std::span<std::byte> FrameReader::writable(std::size_t atLeast) {
    const std::size_t capacity = words_ * WORD;
    if (capacity - end_ < atLeast) {
        auto* bytes = reinterpret_cast<std::byte*>(buffer_.get());
        const std::size_t unread = end_ - begin_;
        if (capacity - unread >= atLeast) {
            // Moving the unread bytes to the front makes room without growing.
            std::memmove(bytes, bytes + begin_, unread);
        } else {
            const std::size_t words = (std::max(capacity * 2, unread + atLeast) + WORD - 1) / WORD;
            std::unique_ptr<capnp::word[]> grown(new capnp::word[words]);
            if (unread > 0)
                std::memcpy(grown.get(), bytes + begin_, unread);
            buffer_ = std::move(grown);
            words_ = words;
        }
        end_ = unread;
        begin_ = 0;
    }
    auto* bytes = reinterpret_cast<std::byte*>(buffer_.get());
    return {bytes + end_, words_ * WORD - end_};
}

void FrameReader::commit(std::size_t bytes) {
    end_ += bytes;
}

FrameReader::Status FrameReader::next(std::optional<capnp::FlatArrayMessageReader>& reader,
                                      std::string& error) {
    reader.reset();
    begin_ += release_;
    release_ = 0;
    if (begin_ == end_) {
        begin_ = end_ = 0; // an empty buffer starts over at the front: no memmove later
        return Status::NEED_MORE;
    }
    const std::size_t available = end_ - begin_;
    if (available < WORD)
        return Status::NEED_MORE;
    const capnp::word* start = buffer_.get() + begin_ / WORD;
    const kj::ArrayPtr<const capnp::word> prefix(start, available / WORD);

    // Segment count and sizes come first: check them before waiting for the frame's bytes.
    std::uint32_t segmentCountMinusOne = 0;
    std::memcpy(&segmentCountMinusOne, start, sizeof segmentCountMinusOne);
    if (segmentCountMinusOne >= 512) {
        error = "frame has " + std::to_string(std::uint64_t{segmentCountMinusOne} + 1) +
                " segments; at most 512 are allowed";
        return Status::ERROR;
    }
    std::size_t expectedWords = 0;
    try {
        expectedWords = capnp::expectedSizeInWordsFromPrefix(prefix);
    } catch (const kj::Exception& e) {
        error = std::string("bad frame header: ") + e.getDescription().cStr();
        return Status::ERROR;
    }
    if (expectedWords > maxFrameBytes_ / WORD) {
        error = "frame of " + std::to_string(expectedWords * WORD) +
                " bytes exceeds the limit of " + std::to_string(maxFrameBytes_) + " bytes";
        return Status::ERROR;
    }
    if (expectedWords > prefix.size())
        return Status::NEED_MORE; // the segment table may still be partial: ask again later

    capnp::ReaderOptions options;
    // Each word may be visited a few times (far pointers, lists of structs); more is an attack.
    options.traversalLimitInWords = expectedWords * 4 + 64;
    options.nestingLimit = 32;
    try {
        reader.emplace(kj::ArrayPtr<const capnp::word>(start, expectedWords), options);
    } catch (const kj::Exception& e) {
        reader.reset();
        error = std::string("bad frame: ") + e.getDescription().cStr();
        return Status::ERROR;
    }
    release_ = expectedWords * WORD;
    return Status::FRAME;
}

} // namespace depot::protocol
