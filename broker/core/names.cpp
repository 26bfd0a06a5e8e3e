#include "broker/core/names.h"

#include <string>

namespace depot::core {

namespace {

// `what` is only turned into text on failure: these checks run on every publish.
Status checkLength(std::string_view what, std::string_view suffix, std::string_view name) {
    if (name.size() <= MAX_NAME_BYTES) [[likely]]
        return {};
    return makeError(ErrorCode::SYNTAX_ERROR, std::string(what) + std::string(suffix) + " is " +
                                                  std::to_string(name.size()) +
                                                  " bytes long; the limit is 255");
}

Status checkNew(std::string_view kind, std::string_view name) {
    if (Status s = checkLength(kind, " name", name); !s)
        return s;
    if (hasReservedPrefix(name))
        return makeError(ErrorCode::ACCESS_REFUSED, std::string(kind) + " name '" +
                                                        std::string(name) +
                                                        "' contains reserved prefix 'amq.*'");
    return {};
}

} // namespace

bool hasReservedPrefix(std::string_view name) {
    return name.starts_with("amq.");
}

Status validateNewExchangeName(std::string_view name) {
    return checkNew("exchange", name);
}

Status validateNewQueueName(std::string_view name) {
    return checkNew("queue", name);
}

Status validateName(std::string_view kind, std::string_view name) {
    return checkLength(kind, " name", name);
}

Status validateRoutingKey(std::string_view key) {
    return checkLength("routing key", "", key);
}

} // namespace depot::core
