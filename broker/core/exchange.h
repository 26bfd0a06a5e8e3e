#pragma once
// An exchange receives published messages and decides, from the routing key (and, for headers
// exchanges, the message headers), which destinations get them. Each type (direct, fanout,
// topic, headers) is a subclass that keeps its own index of bindings. The Vhost owns exchanges
// and is the only caller of the binding methods; the Router calls route().

#include "broker/core/destination.h"
#include "broker/core/error.h"
#include "broker/core/field_table.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace depot::core {

enum class ExchangeType : std::uint8_t { DIRECT, FANOUT, TOPIC, HEADERS };

const char* exchangeTypeName(ExchangeType type);
// "direct", "fanout", "topic", "headers"; anything else is COMMAND_INVALID, as in RabbitMQ.
Result<ExchangeType> parseExchangeType(std::string_view name);

struct ExchangeOptions {
    bool durable = false;
    bool autoDelete = false;       // deleted when its last binding (as a source) is removed
    bool internal = false;         // reachable only through exchange-to-exchange bindings
    std::string alternateExchange; // receives what this exchange cannot route; empty = none
    FieldTable arguments;          // kept for equivalence checks and listing

    friend bool operator==(const ExchangeOptions&, const ExchangeOptions&) = default;
};

// Options from AMQP's declare flags and arguments: "alternate-exchange" (a string; RabbitMQ
// ignores any other type, and so do we) names the alternate exchange; every argument is kept.
ExchangeOptions exchangeOptionsFromArguments(bool durable, bool autoDelete, bool internal,
                                             FieldTable arguments);

// One binding from this exchange: identity is (destination, key, arguments), as in AMQP.
struct BindingEntry {
    Destination destination;
    std::string key;
    FieldTable arguments;

    friend bool operator==(const BindingEntry&, const BindingEntry&) = default;
};

struct BindingEntryHash {
    std::size_t operator()(const BindingEntry& b) const noexcept {
        return std::hash<Destination>{}(b.destination) ^ std::hash<std::string>{}(b.key);
    }
};

class Exchange {
public:
    Exchange(std::string name, ExchangeType type, ExchangeOptions options);
    virtual ~Exchange() = default;
    Exchange(const Exchange&) = delete;
    Exchange& operator=(const Exchange&) = delete;

    const std::string& name() const { return name_; }
    ExchangeType type() const { return type_; }
    const ExchangeOptions& options() const { return options_; }
    bool isDefault() const { return name_.empty(); }

    // Appends the destinations bound for this key. May append one destination more than once
    // (several matching bindings): the Router deduplicates.
    virtual void route(std::string_view routingKey, const FieldTable& headers,
                       std::vector<Destination>& out) = 0;

    // Checks a binding's key and arguments before it is added (e.g. x-match for headers).
    virtual Status validateBinding(std::string_view key, const FieldTable& arguments) const;

    // Returns false if an identical binding exists already (binding twice is a no-op in AMQP).
    bool addBinding(const BindingEntry& binding);
    // Returns false if there is no such binding.
    bool removeBinding(const BindingEntry& binding);
    // Removes every binding to `destination`; returns how many.
    std::size_t removeBindingsTo(Destination destination);
    std::size_t bindingCount() const { return bindings_.size(); }
    const std::unordered_set<BindingEntry, BindingEntryHash>& bindings() const { return bindings_; }
    // True once a binding was ever added: auto-delete applies only to exchanges that had one.
    bool hadBindings() const { return hadBindings_; }

    // Router bookkeeping: the publish this exchange was last visited in (avoids a visited set).
    std::uint64_t routeMark = 0;

protected:
    virtual void indexAdd(const BindingEntry& binding) = 0;
    virtual void indexRemove(const BindingEntry& binding) = 0;

private:
    std::string name_;
    ExchangeType type_;
    ExchangeOptions options_;
    std::unordered_set<BindingEntry, BindingEntryHash> bindings_;
    bool hadBindings_ = false;
};

} // namespace depot::core
