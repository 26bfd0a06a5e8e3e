#include "client/topology.h"

#include <algorithm>

namespace depot::client {

void Topology::declared(Exchange exchange) {
    if (exchange.options.passive)
        return; // checked, not made: nothing to make again
    std::erase_if(exchanges, [&](const Exchange& x) { return x.name == exchange.name; });
    exchanges.push_back(std::move(exchange));
}

void Topology::declared(Queue queue) {
    if (queue.options.passive)
        return;
    std::erase_if(queues, [&](const Queue& q) { return q.name == queue.name; });
    queues.push_back(std::move(queue));
}

void Topology::bound(Binding binding) {
    if (std::find(bindings.begin(), bindings.end(), binding) == bindings.end())
        bindings.push_back(std::move(binding));
}

void Topology::unbound(const Binding& binding) {
    std::erase(bindings, binding);
}

void Topology::exchangeDeleted(const std::string& name) {
    std::erase_if(exchanges, [&](const Exchange& x) { return x.name == name; });
    std::erase_if(bindings, [&](const Binding& b) {
        return b.source == name || (b.toExchange && b.destination == name);
    });
}

void Topology::queueDeleted(const std::string& name) {
    std::erase_if(queues, [&](const Queue& q) { return q.name == name; });
    std::erase_if(bindings,
                  [&](const Binding& b) { return !b.toExchange && b.destination == name; });
}

void Topology::queueRenamed(const std::string& from, const std::string& to) {
    for (Queue& q : queues)
        if (q.name == from)
            q.name = to;
    for (Binding& b : bindings)
        if (!b.toExchange && b.destination == from)
            b.destination = to;
}

} // namespace depot::client
