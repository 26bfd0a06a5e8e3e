// libFuzzer target for everything depotd does with bytes before the core sees them: split the
// stream into frames (FrameReader), read each Frame and every field the server reads, and
// convert field tables and properties. Bad input must end in a clean error, never a crash, a
// hang, or an unbounded allocation. Built only with clang (DEPOT_SANITIZE=ON); CI runs it for
// a bounded time from a seed corpus generated from the schema (tests/CMakeLists.txt).

#include "protocol/convert.h"
#include "protocol/frame_reader.h"

#include <capnp/schema.h>
#include <kj/exception.h>

#include <cstdint>
#include <cstring>

namespace {

void readMessage(depot::wire::Message::Reader m) {
    (void)depot::protocol::text(m.getExchange());
    (void)depot::protocol::fromWire(m.getProperties());
    (void)depot::protocol::fromWire(m.getDeaths());
    (void)depot::protocol::paddedBody(m.getBody());
}

void readFrame(depot::wire::Frame::Reader f) {
    using depot::wire::Frame;
    switch (f.which()) {
    case Frame::HELLO:
        (void)depot::protocol::text(f.getHello().getUsername());
        break;
    case Frame::DECLARE_EXCHANGE:
        (void)depot::protocol::fromWire(f.getDeclareExchange().getType());
        (void)depot::protocol::fromWire(f.getDeclareExchange().getArguments());
        break;
    case Frame::DECLARE_QUEUE:
        (void)depot::protocol::fromWire(f.getDeclareQueue().getArguments());
        break;
    case Frame::BIND:
        (void)depot::protocol::fromWire(f.getBind().getArguments());
        break;
    case Frame::PUBLISH:
        (void)depot::protocol::fromWire(f.getPublish().getProperties());
        (void)depot::protocol::paddedBody(f.getPublish().getBody());
        break;
    case Frame::DELIVER:
        readMessage(f.getDeliver().getMessage());
        break;
    case Frame::GET_OK:
        if (f.getGetOk().isMessage())
            readMessage(f.getGetOk().getMessage());
        break;
    case Frame::ERROR:
        (void)depot::protocol::fromWire(f.getError());
        break;
    default:
        break;
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    depot::protocol::FrameReader reader(1 << 20);
    // Feed in two pieces, as a socket would, so partial frames are exercised too.
    const std::size_t half = size / 2;
    for (const auto& [from, length] : {std::pair{std::size_t{0}, half}, {half, size - half}}) {
        auto room = reader.writable(length + 1);
        std::memcpy(room.data(), data + from, length);
        reader.commit(length);
        std::optional<capnp::FlatArrayMessageReader> frame;
        std::string error;
        for (;;) {
            const auto status = reader.next(frame, error);
            if (status != depot::protocol::FrameReader::Status::FRAME)
                break;
            try {
                readFrame(frame->getRoot<depot::wire::Frame>());
            } catch (const kj::Exception&) {
                return 0;
            } catch (const depot::protocol::ProtocolError&) {
                return 0;
            }
        }
        if (!error.empty())
            return 0;
    }
    return 0;
}
