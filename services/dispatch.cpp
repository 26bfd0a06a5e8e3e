// dispatch: assigns a courier to each placed order (OrderPlaced -> CourierAssigned). Its queue
// `dispatch` has one consumer per running instance, each with a prefetch of 1, so the broker
// hands orders out in turn to whichever instance is free: start a second `delivery dispatch`
// and the two share the work (competing consumers).
//
// The courier is chosen from those of the pickup region by the tracking id, so any instance
// makes the same choice for the same package, and a redelivered order is assigned again to the
// same courier with the same message id (downstream inboxes drop the copy).

#include "services/factories.h"
#include "services/world.h"

#include "protocol/delivery.capnp.h"

#include <algorithm>
#include <atomic>

namespace depot::delivery {

namespace {

using client::Outgoing;
using client::Received;

class Dispatch final : public Service {
public:
    explicit Dispatch(const ServiceOptions& options) : Service("dispatch", options) {}
    ~Dispatch() override { stop(); }

    void start() override {
        client::SubscribeOptions options;
        options.inbox = makeInbox();
        options.prefetch = 1; // fair shares between instances
        auto& orders = subscriptions_.emplace_back(bus_.subscribe("dispatch", options));
        orders.on<contracts::OrderPlaced>(
            [this](const Received<contracts::OrderPlaced>& placed) { assign(placed.body()); },
            {"order.*.placed"});
        orders.start();
    }

    std::string summary() const override {
        return instance() + ": " + std::to_string(assigned_) + " couriers assigned";
    }

private:
    void assign(contracts::OrderPlaced::Reader order) {
        simulateWork();
        const std::string from = order.getFromRegion();
        const std::uint32_t perRegion = std::max<std::uint32_t>(
            1, options_.couriers / static_cast<std::uint32_t>(regions().size()));
        const std::uint64_t pick = stableHash(order.getTrackingId().cStr()) % perRegion;

        Outgoing<contracts::CourierAssigned> assigned;
        assigned->setTrackingId(order.getTrackingId());
        assigned->setCourierId("courier-" + from + "-" + std::to_string(pick + 1));
        assigned->setFromRegion(from);
        assigned->setToRegion(order.getToRegion());
        assigned->setCustomer(order.getCustomer());
        assigned->setDispatcher(instance());
        assigned->setSpeed(order.getSpeed());
        bus_.publish(assigned, "package." + from + ".assigned");
        ++assigned_;
    }

    std::atomic<std::uint64_t> assigned_{0};
};

} // namespace

std::unique_ptr<Service> makeDispatch(const ServiceOptions& options) {
    return std::make_unique<Dispatch>(options);
}

} // namespace depot::delivery
