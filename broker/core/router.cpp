#include "broker/core/router.h"

#include "broker/core/exchange.h"
#include "broker/core/queue.h"

namespace depot::core {

void Router::route(Exchange& start, std::string_view routingKey, const FieldTable& headers,
                   std::vector<Queue*>& out) {
    const std::uint64_t epoch = ++epoch_;
    pending_.clear();
    pending_.push_back(&start);
    start.routeMark = epoch;
    while (!pending_.empty()) {
        Exchange* exchange = pending_.back();
        pending_.pop_back();
        destinations_.clear();
        exchange->route(routingKey, headers, destinations_);
        if (destinations_.empty() && !exchange->options().alternateExchange.empty()) {
            // RabbitMQ applies an alternate exchange wherever an exchange on the path routes
            // nowhere, and the alternate's own alternate after that.
            if (Exchange* alternate = lookup_(exchange->options().alternateExchange))
                destinations_.push_back(Destination::toExchange(alternate));
        }
        for (Destination d : destinations_) {
            if (Queue* queue = d.queue()) {
                if (queue->routeMark != epoch) {
                    queue->routeMark = epoch;
                    out.push_back(queue);
                }
            } else if (Exchange* next = d.exchange(); next->routeMark != epoch) {
                next->routeMark = epoch;
                pending_.push_back(next);
            }
        }
    }
}

} // namespace depot::core
