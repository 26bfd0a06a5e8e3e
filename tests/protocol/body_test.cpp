// A body depotd copies out of a publish (paddedBody) must hold exactly the published bytes, in
// an allocation zero-padded to a whole word, so that a large one can go into deliveries without
// another copy (canReferenceBody) and never puts stale heap bytes on the wire.

#include "protocol/convert.h"

#include <capnp/common.h>
#include <doctest/doctest.h>

#include <cstddef>
#include <string>

using depot::protocol::canReferenceBody;
using depot::protocol::paddedBody;

namespace {

std::string published(std::size_t size) {
    std::string bytes(size, '\0');
    for (std::size_t i = 0; i < size; ++i)
        bytes[i] = static_cast<char>('a' + i % 26);
    return bytes;
}

capnp::Data::Reader asData(const std::string& bytes) {
    return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size());
}

} // namespace

TEST_CASE("paddedBody keeps the bytes and zero-pads the allocation to a whole word") {
    for (const std::size_t size : {0, 1, 7, 8, 9, 100, 4095, 4096, 4099, 16384, 16389}) {
        CAPTURE(size);
        const std::string sent = published(size);
        const std::string body = paddedBody(asData(sent));
        CHECK(body == sent);
        const std::size_t padded = (size + 7) / 8 * 8;
        REQUIRE(body.capacity() >= padded);
        for (std::size_t i = size; i < padded; ++i)
            CHECK(body.data()[i] == '\0');
        CHECK(canReferenceBody(body) == (size >= 4096));
    }
}
