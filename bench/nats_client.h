#pragma once
// Just enough of core NATS (CONNECT, PUB, SUB, MSG, PING/PONG over TCP) for depot-bench to
// measure nats-server in the same run as Depot: issue 3's reference for a broker without acks
// is what nats-server reaches on the same machine. Blocking, one thread per client, publishes
// buffered and written 64 KiB at a time, as NATS's own clients do. A baseline for the bench,
// not a client for services.

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace depot::bench {

bool isNatsUrl(std::string_view url); // nats://...

class NatsClient {
public:
    struct Message {
        std::string_view subject;
        std::string_view replyTo;
        std::string_view payload;
    };

    // Connects to nats://host:port (a host name or an IPv4 address), says CONNECT and waits for
    // the server's answer to a PING; throws std::runtime_error (-ERR included) on failure.
    explicit NatsClient(const std::string& url);
    ~NatsClient();
    NatsClient(const NatsClient&) = delete;
    NatsClient& operator=(const NatsClient&) = delete;

    void subscribe(std::string_view subject, int sid);
    // Buffered: written with flush(), or once 64 KiB are waiting.
    void publish(std::string_view subject, std::string_view replyTo, std::string_view payload);
    void flush();
    // Flushes, then waits until the server has answered a PING: it has processed everything
    // sent before. Messages arriving meanwhile go to `onMessage`.
    void ping(const std::function<void(const Message&)>& onMessage = {});

    // Reads messages, calling `onMessage` for each, until `done()` holds (checked after each
    // one) or `timeout` passes without one arriving; answers the server's PINGs. False on
    // timeout; throws on a closed connection, an -ERR, or a malformed frame.
    bool receive(const std::function<void(const Message&)>& onMessage,
                 const std::function<bool()>& done, std::chrono::milliseconds timeout);

private:
    // Parses what is buffered; false when more bytes are needed.
    bool parseOne(const std::function<void(const Message&)>& onMessage);
    void readMore(std::chrono::milliseconds timeout); // throws on EOF, error or timeout
    void writeAll(std::string_view bytes);

    int fd_ = -1;
    std::string out_;
    std::vector<char> in_; // read; [inBegin_, inEnd_) not parsed yet
    std::size_t inBegin_ = 0;
    std::size_t inEnd_ = 0;
    std::size_t pongs_ = 0;
    bool timedOut_ = false;
};

} // namespace depot::bench
