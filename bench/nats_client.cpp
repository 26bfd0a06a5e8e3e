#include "bench/nats_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace depot::bench {

namespace {

constexpr std::size_t FLUSH_BYTES = 64 * 1024;
constexpr std::size_t READ_BYTES = 256 * 1024;
constexpr std::size_t MAX_LINE = 4096;         // a control line (MSG, INFO, -ERR ...)
constexpr std::size_t MAX_PAYLOAD = 64u << 20; // nats-server's own limit is far below
constexpr std::chrono::seconds HANDSHAKE{10};

std::runtime_error failure(const std::string& what) {
    return std::runtime_error("nats: " + what);
}

// A control line's words, at most MAX_WORDS (no allocation per message): `count` says how
// many, MAX_WORDS + 1 for a line with more.
constexpr std::size_t MAX_WORDS = 6;
struct Words {
    std::string_view word[MAX_WORDS];
    std::size_t count = 0;
};
Words words(std::string_view line) {
    Words out;
    std::size_t at = 0;
    while (at < line.size()) {
        const std::size_t end = std::min(line.find_first_of(" \t", at), line.size());
        if (end > at) {
            if (out.count == MAX_WORDS) {
                ++out.count;
                return out;
            }
            out.word[out.count++] = line.substr(at, end - at);
        }
        at = end + 1;
    }
    return out;
}

// A blocking socket connected to `a`, or -1 when that fails or takes longer than `limit`.
int connectWithin(const addrinfo& a, std::chrono::seconds limit) {
    const int fd =
        ::socket(a.ai_family, a.ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a.ai_protocol);
    if (fd < 0)
        return -1;
    bool connected = ::connect(fd, a.ai_addr, a.ai_addrlen) == 0;
    if (!connected && errno == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        int error = 0;
        socklen_t size = sizeof error;
        connected = ::poll(&p, 1, static_cast<int>(limit.count() * 1000)) == 1 &&
                    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) == 0 && error == 0;
    }
    if (!connected || ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

} // namespace

bool isNatsUrl(std::string_view url) {
    return url.substr(0, 7) == "nats://";
}

NatsClient::NatsClient(const std::string& url) {
    if (!isNatsUrl(url))
        throw failure("not a nats:// URL: " + url);
    const std::string hostPort = url.substr(7, url.find('/', 7) - 7);
    const std::size_t colon = hostPort.rfind(':');
    if (colon == std::string::npos || hostPort.find('@') != std::string::npos)
        throw failure("expected nats://HOST:PORT, got " + url);
    const std::string host = hostPort.substr(0, colon), port = hostPort.substr(colon + 1);
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr)
        throw failure("cannot resolve " + hostPort);
    for (addrinfo* a = found; a != nullptr && fd_ < 0; a = a->ai_next)
        fd_ = connectWithin(*a, HANDSHAKE);
    ::freeaddrinfo(found);
    if (fd_ < 0)
        throw failure("cannot connect to " + hostPort);
    const int one = 1;
    (void)::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // The server speaks first (INFO); CONNECT, then a PING whose PONG says we are in.
    out_ = "CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"depot-bench\"}\r\n";
    try {
        ping();
    } catch (...) {
        ::close(fd_); // no destructor runs for a constructor that throws
        throw;
    }
}

NatsClient::~NatsClient() {
    if (fd_ >= 0)
        ::close(fd_);
}

void NatsClient::subscribe(std::string_view subject, int sid) {
    out_ += "SUB ";
    out_ += subject;
    out_ += ' ';
    out_ += std::to_string(sid);
    out_ += "\r\n";
}

void NatsClient::publish(std::string_view subject, std::string_view replyTo,
                         std::string_view payload) {
    char size[24];
    const auto [end, ec] = std::to_chars(size, size + sizeof size, payload.size());
    (void)ec;
    out_ += "PUB ";
    out_ += subject;
    out_ += ' ';
    if (!replyTo.empty()) {
        out_ += replyTo;
        out_ += ' ';
    }
    out_.append(size, end);
    out_ += "\r\n";
    out_ += payload;
    out_ += "\r\n";
    if (out_.size() >= FLUSH_BYTES)
        flush();
}

void NatsClient::flush() {
    writeAll(out_);
    out_.clear();
}

void NatsClient::ping(const std::function<void(const Message&)>& onMessage) {
    out_ += "PING\r\n";
    flush();
    const std::size_t want = pongs_ + 1;
    if (!receive(
            onMessage, [&] { return pongs_ >= want; },
            std::chrono::duration_cast<std::chrono::milliseconds>(HANDSHAKE)))
        throw failure("no PONG in " + std::to_string(HANDSHAKE.count()) + " s");
}

bool NatsClient::receive(const std::function<void(const Message&)>& onMessage,
                         const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    while (!done()) {
        if (parseOne(onMessage))
            continue;
        readMore(timeout);
        if (timedOut_)
            return false;
    }
    return true;
}

bool NatsClient::parseOne(const std::function<void(const Message&)>& onMessage) {
    const std::string_view buffered(in_.data() + inBegin_, inEnd_ - inBegin_);
    const std::size_t lineEnd = buffered.find("\r\n");
    if (lineEnd == std::string_view::npos) {
        if (buffered.size() > MAX_LINE)
            throw failure("a control line longer than " + std::to_string(MAX_LINE) + " bytes");
        return false;
    }
    const std::string_view line = buffered.substr(0, lineEnd);
    const Words w = words(line);
    if (w.count == 0) {
        inBegin_ += lineEnd + 2;
        return true;
    }
    if (w.word[0] == "MSG") {
        // MSG <subject> <sid> [reply-to] <#bytes>
        if (w.count != 4 && w.count != 5)
            throw failure("malformed MSG line: " + std::string(line));
        std::size_t size = 0;
        const std::string_view count = w.word[w.count - 1];
        if (std::from_chars(count.data(), count.data() + count.size(), size).ec != std::errc{} ||
            size > MAX_PAYLOAD)
            throw failure("bad MSG size: " + std::string(line));
        if (buffered.size() < lineEnd + 2 + size + 2)
            return false; // the payload is still on its way
        if (buffered.substr(lineEnd + 2 + size, 2) != "\r\n")
            throw failure("a MSG payload not followed by CRLF: " + std::string(line));
        const Message m{w.word[1], w.count == 5 ? w.word[3] : std::string_view(),
                        buffered.substr(lineEnd + 2, size)};
        inBegin_ += lineEnd + 2 + size + 2;
        if (onMessage)
            onMessage(m);
        return true;
    }
    inBegin_ += lineEnd + 2;
    if (w.word[0] == "PING") {
        out_ += "PONG\r\n";
        flush();
    } else if (w.word[0] == "PONG") {
        ++pongs_;
    } else if (w.word[0] == "-ERR") {
        throw failure("the server said " + std::string(line));
    } // INFO, +OK: nothing to do
    return true;
}

void NatsClient::readMore(std::chrono::milliseconds timeout) {
    timedOut_ = false;
    if (inBegin_ > 0) { // what was parsed goes; the rest moves to the front
        std::memmove(in_.data(), in_.data() + inBegin_, inEnd_ - inBegin_);
        inEnd_ -= inBegin_;
        inBegin_ = 0;
    }
    if (in_.size() - inEnd_ < READ_BYTES)
        in_.resize(inEnd_ + READ_BYTES); // grows only for a payload larger than a read
    pollfd p{fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (ready == 0) {
        timedOut_ = true;
        return;
    }
    if (ready < 0) {
        if (errno == EINTR)
            return; // read again on the next turn
        throw failure(std::string("poll: ") + std::strerror(errno));
    }
    const ssize_t n = ::recv(fd_, in_.data() + inEnd_, in_.size() - inEnd_, 0);
    if (n == 0)
        throw failure("the server closed the connection");
    if (n < 0 && errno != EINTR && errno != EAGAIN)
        throw failure(std::string("recv: ") + std::strerror(errno));
    inEnd_ += static_cast<std::size_t>(std::max<ssize_t>(n, 0));
}

void NatsClient::writeAll(std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            throw failure(n == 0 ? std::string("send took nothing")
                                 : std::string("send: ") + std::strerror(errno));
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
}

} // namespace depot::bench
