#include "broker/core/error.h"

namespace depot::core {

const char* errorCodeName(ErrorCode code) {
    switch (code) {
    case ErrorCode::ACCESS_REFUSED:
        return "ACCESS_REFUSED";
    case ErrorCode::NOT_FOUND:
        return "NOT_FOUND";
    case ErrorCode::RESOURCE_LOCKED:
        return "RESOURCE_LOCKED";
    case ErrorCode::PRECONDITION_FAILED:
        return "PRECONDITION_FAILED";
    case ErrorCode::FRAME_ERROR:
        return "FRAME_ERROR";
    case ErrorCode::SYNTAX_ERROR:
        return "SYNTAX_ERROR";
    case ErrorCode::COMMAND_INVALID:
        return "COMMAND_INVALID";
    case ErrorCode::UNEXPECTED_FRAME:
        return "UNEXPECTED_FRAME";
    case ErrorCode::RESOURCE_ERROR:
        return "RESOURCE_ERROR";
    case ErrorCode::NOT_ALLOWED:
        return "NOT_ALLOWED";
    case ErrorCode::NOT_IMPLEMENTED:
        return "NOT_IMPLEMENTED";
    case ErrorCode::INTERNAL_ERROR:
        return "INTERNAL_ERROR";
    }
    return "UNKNOWN_ERROR"; // a value cast from outside the enum
}

std::string Error::describe() const {
    return std::string(errorCodeName(code)) + " - " + text;
}

void assertionFailed(const char* expr, const char* file, int line, const char* what) {
    std::fprintf(stderr, "depot: internal invariant broken at %s:%d: %s (%s)\n", file, line, what,
                 expr);
    std::abort();
}

} // namespace depot::core
