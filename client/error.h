#pragma once
// What the client library throws. Broker errors keep AMQP's codes (the same ErrorCode the core
// and the wire use); the library adds its own for what happens on the client's side.

#include "broker/core/error.h"

#include <stdexcept>
#include <string>

namespace depot::client {

enum class ErrorKind {
    BROKER,           // the broker refused the request: see code()
    TIMEOUT,          // no answer in time (a request, an RPC, a connect)
    CONNECTION_LOST,  // the connection closed while the request was outstanding
    INVALID_ARGUMENT, // a bad URL or option, caught before anything was sent
    HANDLER_FAILED    // reported to onError: a handler or responder threw, or a request that
                      // serve() received had no reply-to
};

class Error : public std::runtime_error {
public:
    Error(ErrorKind kind, std::string message,
          core::ErrorCode code = core::ErrorCode::INTERNAL_ERROR)
        : std::runtime_error(std::move(message)), kind_(kind), code_(code) {}

    // A broker error, worded like RabbitMQ's: "NOT_FOUND - no queue 'q' in vhost '/'".
    static Error broker(const core::Error& error) {
        return Error(ErrorKind::BROKER, error.describe(), error.code);
    }

    ErrorKind kind() const { return kind_; }
    // Meaningful when kind() is BROKER.
    core::ErrorCode code() const { return code_; }

private:
    ErrorKind kind_;
    core::ErrorCode code_;
};

// An Error as plain values, to carry it from one thread to another (a broker or network thread
// to a waiting caller). No exception object crosses threads: one freed on another thread than
// the one that caught it hides behind libstdc++'s uninstrumented reference counts
// (ThreadSanitizer reports it as a race).
struct Failure {
    explicit Failure(const Error& e) : kind(e.kind()), message(e.what()), code(e.code()) {}
    Error error() const { return Error(kind, message, code); }

    ErrorKind kind;
    std::string message;
    core::ErrorCode code;
};

} // namespace depot::client
