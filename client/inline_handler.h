#pragma once
// What an inline handler (ConsumeOptions::inlineHandler) may not do: wait for the broker. Over
// depot:// such a handler runs on the connection's network thread, which is the thread that
// would read the broker's answer, so a wait there could only time out. Every transport checks
// refuseInInlineHandler() before it waits, whether or not it runs such handlers inline (embedded:
// and amqp:// run them on the dispatcher thread), so a handler that breaks the rule fails the
// same way over every transport.

#include "client/error.h"

namespace depot::client {

namespace detail {
inline thread_local bool inInlineHandler = false;
} // namespace detail

// Marks this thread as running an inline handler while it lives (or, with false, as not: for
// a wait that is allowed there because it cannot be long).
class InlineHandlerScope {
public:
    explicit InlineHandlerScope(bool inlineHandler = true) : outer_(detail::inInlineHandler) {
        detail::inInlineHandler = inlineHandler;
    }
    ~InlineHandlerScope() { detail::inInlineHandler = outer_; }
    InlineHandlerScope(const InlineHandlerScope&) = delete;
    InlineHandlerScope& operator=(const InlineHandlerScope&) = delete;

private:
    bool outer_;
};

inline bool inInlineHandler() {
    return detail::inInlineHandler;
}

// Throws Error(INVALID_ARGUMENT) when called from an inline handler.
inline void refuseInInlineHandler() {
    if (detail::inInlineHandler)
        throw Error(ErrorKind::INVALID_ARGUMENT,
                    "an inline handler (ConsumeOptions::inlineHandler) cannot wait for the "
                    "broker: make this call from another thread, or consume without "
                    "inlineHandler");
}

} // namespace depot::client
