#pragma once
// What a connection declared, so that it can declare it again after reconnecting: exchanges,
// queues and bindings, in the order they were made, minus what was deleted since. Consumers are
// kept by the transport, which owns their handlers.

#include "client/connection.h"

#include <map>
#include <string>
#include <vector>

namespace depot::client {

struct Topology {
    struct Exchange {
        std::string name;
        ExchangeType type;
        ExchangeDeclareOptions options;
    };
    struct Queue {
        std::string name;         // as the broker named it last
        bool serverNamed = false; // declared with "": declare "" again, and follow the new name
        QueueDeclareOptions options;
    };
    struct Binding {
        std::string destination;
        std::string source;
        std::string key;
        FieldTable arguments;
        bool toExchange = false;
        friend bool operator==(const Binding&, const Binding&) = default;
    };

    std::vector<Exchange> exchanges;
    std::vector<Queue> queues;
    std::vector<Binding> bindings;

    void declared(Exchange exchange);
    void declared(Queue queue);
    void bound(Binding binding);
    void unbound(const Binding& binding);
    void exchangeDeleted(const std::string& name);
    void queueDeleted(const std::string& name);
    // A server-named queue came back under a new name: bindings follow it.
    void queueRenamed(const std::string& from, const std::string& to);
};

} // namespace depot::client
