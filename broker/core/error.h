#pragma once
// Errors of the routing core, with AMQP 0-9-1's meanings and reply codes. Expected outcomes
// (not found, precondition failed, ...) are returned as Result<T> / Status, never thrown: the
// network layer must turn each one into an error frame, and a flood of bad requests stays cheap.
// Broken invariants are DEPOT_ASSERT: they stop the process, because the state is no longer
// trustworthy.

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <variant>

namespace depot::core {

// Values are AMQP 0-9-1 reply codes, so logs and the wire agree with what RabbitMQ users know.
enum class ErrorCode : int {
    ACCESS_REFUSED = 403,      // operation not allowed (default exchange, amq. prefix, internal)
    NOT_FOUND = 404,           // exchange, queue or vhost does not exist
    RESOURCE_LOCKED = 405,     // exclusive queue owned by another channel
    PRECONDITION_FAILED = 406, // inequivalent re-declare, unknown delivery tag, if-unused/if-empty
    FRAME_ERROR = 501,         // malformed frame (used by the protocol layer)
    SYNTAX_ERROR = 502,        // a field's value is invalid (name too long, bad argument type)
    COMMAND_INVALID = 503,     // a request that makes no sense (unknown exchange type)
    UNEXPECTED_FRAME = 505,    // a valid frame in the wrong place (used by the protocol layer)
    RESOURCE_ERROR = 506,      // the broker is short of a resource (memory, connections)
    NOT_ALLOWED = 530,         // a request the broker will not do (reusing a consumer tag)
    NOT_IMPLEMENTED = 540,     // a feature Depot does not have
    INTERNAL_ERROR = 541,      // a bug: an invariant broke
};

// The AMQP name, for messages such as "NOT_FOUND - no queue 'q' in vhost '/'".
const char* errorCodeName(ErrorCode code);

struct Error {
    ErrorCode code;
    std::string text;

    // "NOT_FOUND - no queue 'q' in vhost '/'", the shape RabbitMQ uses in channel.close.
    std::string describe() const;
};

// A value or an Error. Small and explicit on purpose: std::expected is C++23.
template <class T> class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::move(value)) {}
    Result(Error error) : v_(std::move(error)) {}

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }

    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    const Error& error() const { return std::get<1>(v_); }

private:
    std::variant<T, Error> v_;
};

// Result<void>: success or an Error.
class [[nodiscard]] Status {
public:
    Status() = default;
    Status(Error error) : error_(std::move(error)), ok_(false) {}

    bool ok() const { return ok_; }
    explicit operator bool() const { return ok_; }
    const Error& error() const { return error_; }

private:
    Error error_{ErrorCode::INTERNAL_ERROR, {}};
    bool ok_ = true;
};

inline Error makeError(ErrorCode code, std::string text) {
    return Error{code, std::move(text)};
}

[[noreturn]] void assertionFailed(const char* expr, const char* file, int line, const char* what);

} // namespace depot::core

// Invariant check that stays on in release builds: the core's state is shared by every client,
// so continuing past a broken invariant would corrupt other users' messages.
#define DEPOT_ASSERT(cond, what)                                                                   \
    do {                                                                                           \
        if (!(cond)) [[unlikely]]                                                                  \
            ::depot::core::assertionFailed(#cond, __FILE__, __LINE__, what);                       \
    } while (0)
