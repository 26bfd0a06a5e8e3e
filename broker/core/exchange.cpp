#include "broker/core/exchange.h"

namespace depot::core {

const char* exchangeTypeName(ExchangeType type) {
    switch (type) {
    case ExchangeType::DIRECT:
        return "direct";
    case ExchangeType::FANOUT:
        return "fanout";
    case ExchangeType::TOPIC:
        return "topic";
    case ExchangeType::HEADERS:
        return "headers";
    }
    return "unknown";
}

Result<ExchangeType> parseExchangeType(std::string_view name) {
    for (ExchangeType type :
         {ExchangeType::DIRECT, ExchangeType::FANOUT, ExchangeType::TOPIC, ExchangeType::HEADERS})
        if (name == exchangeTypeName(type))
            return type;
    return makeError(ErrorCode::COMMAND_INVALID,
                     "invalid exchange type '" + std::string(name) +
                         "' (known types: direct, fanout, topic, headers)");
}

Exchange::Exchange(std::string name, ExchangeType type, ExchangeOptions options)
    : name_(std::move(name)), type_(type), options_(std::move(options)) {}

Status Exchange::validateBinding(std::string_view, const FieldTable&) const {
    return {};
}

bool Exchange::addBinding(const BindingEntry& binding) {
    auto [it, inserted] = bindings_.insert(binding);
    if (!inserted)
        return false;
    hadBindings_ = true;
    indexAdd(*it); // the stored entry: indexes may keep pointers into it
    return true;
}

bool Exchange::removeBinding(const BindingEntry& binding) {
    auto it = bindings_.find(binding);
    if (it == bindings_.end())
        return false;
    indexRemove(*it);
    bindings_.erase(it);
    return true;
}

std::size_t Exchange::removeBindingsTo(Destination destination) {
    std::size_t removed = 0;
    for (auto it = bindings_.begin(); it != bindings_.end();) {
        if (it->destination == destination) {
            indexRemove(*it);
            it = bindings_.erase(it);
            ++removed;
        } else {
            ++it;
        }
    }
    return removed;
}

ExchangeOptions exchangeOptionsFromArguments(bool durable, bool autoDelete, bool internal,
                                             FieldTable arguments) {
    ExchangeOptions options;
    options.durable = durable;
    options.autoDelete = autoDelete;
    options.internal = internal;
    if (std::optional<std::string_view> alternate = arguments.getString("alternate-exchange"))
        options.alternateExchange = std::string(*alternate);
    options.arguments = std::move(arguments);
    return options;
}

} // namespace depot::core
