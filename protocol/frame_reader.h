#pragma once
// Splits a byte stream into frames: each frame is one Cap'n Proto message in the standard stream
// framing (protocol/wire.capnp). Bytes go into a word-aligned buffer, and a complete frame is
// read in place, without copying: the reader it returns points into the buffer.
//
// Limits: a frame larger than maxFrameBytes is an error as soon as its segment table says so,
// before its bytes are buffered, so a peer cannot make us allocate more than one frame's worth.
// Reading a frame uses Cap'n Proto's traversal limit (the frame's own size), so a malicious
// frame cannot make a reader loop over shared pointers.

#include <capnp/serialize.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace depot::protocol {

// RabbitMQ's default max message size (128 MiB) plus room for the frame around the body.
constexpr std::size_t DEFAULT_MAX_FRAME_BYTES = (std::size_t{128} << 20) + 4096;

class FrameReader {
public:
    explicit FrameReader(std::size_t maxFrameBytes = DEFAULT_MAX_FRAME_BYTES);

    // Room for at least `atLeast` more bytes, to read the socket into; then commit(n). It may
    // move the buffer: release the frame from next() first (it points into the buffer).
    std::span<std::byte> writable(std::size_t atLeast = 64 * 1024);
    void commit(std::size_t bytes);

    enum class Status { FRAME, NEED_MORE, ERROR };
    // On FRAME, `reader` holds the next frame until the next call of next() (which also releases
    // its bytes). On ERROR, `error` says why; the stream cannot go on.
    Status next(std::optional<capnp::FlatArrayMessageReader>& reader, std::string& error);

    std::size_t bufferedBytes() const { return end_ - begin_; }
    std::size_t maxFrameBytes() const { return maxFrameBytes_; }
    // A client learns the server's limit from helloOk and follows it.
    void setMaxFrameBytes(std::size_t bytes) { maxFrameBytes_ = bytes; }

private:
    std::size_t maxFrameBytes_;
    // Not a std::vector: clang builds of capnp make `word` neither copyable nor movable.
    std::unique_ptr<capnp::word[]> buffer_;
    std::size_t words_ = 0;
    std::size_t begin_ = 0;   // bytes: start of the first unread frame (always word-aligned)
    std::size_t end_ = 0;     // bytes: end of what was received
    std::size_t release_ = 0; // bytes of the frame handed out by the last next()
};

} // namespace depot::protocol
