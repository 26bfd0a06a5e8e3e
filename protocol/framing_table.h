#pragma once
// Cap'n Proto's stream framing table, as the frames on the wire and the message store's records
// carry it before a message's segments: (segment count - 1), each segment's size in words,
// padded with a zero to a whole word, in host byte order (little-endian, as Cap'n Proto's format
// and every machine Depot builds for). Built entry by entry on the stack for the usual message
// of a few segments (a zeroed table sized for capnp's 512-segment limit cost 4 KiB of memset
// per frame).

#include <capnp/message.h>

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <vector>

namespace depot::protocol {

class FramingTable {
public:
    explicit FramingTable(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
        const std::size_t count = segments.size();
        size_ = (count + 2) / 2 * 2;
        if (size_ > std::size(small_)) {
            large_.resize(size_);
            table_ = large_.data();
        }
        table_[0] = static_cast<std::uint32_t>(count - 1);
        for (std::size_t i = 0; i < count; ++i)
            table_[i + 1] = static_cast<std::uint32_t>(segments[i].size());
        if (count + 1 < size_)
            table_[count + 1] = 0; // the padding
    }
    FramingTable(const FramingTable&) = delete;
    FramingTable& operator=(const FramingTable&) = delete;

    const void* data() const { return table_; }
    std::size_t bytes() const { return size_ * sizeof(std::uint32_t); }

private:
    std::uint32_t small_[16];
    std::vector<std::uint32_t> large_;
    std::uint32_t* table_ = small_;
    std::size_t size_ = 0;
};

} // namespace depot::protocol
