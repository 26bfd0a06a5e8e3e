// orders: takes PlaceOrder commands from its queue (`orders`), asks pricing for a quote over
// RPC, and announces the outcome: OrderPlaced (with the package's tracking id and price) or
// OrderRejected (with the reason).
//
// Idempotent: the tracking id is derived from the order id, and OrderPlaced/OrderRejected
// carry a message id made from the order id, so an order handled twice (a command redelivered
// after a crash, or the same order id sent again by a customer) is announced with the same id,
// and subscribers' inboxes drop the repeat; its own inbox drops a redelivered command. When
// pricing does not answer, the handler fails and is retried; after the last attempt the command
// waits in `orders.error` for an operator.

#include "services/addresses.h"
#include "services/factories.h"
#include "services/world.h"

#include "protocol/delivery.capnp.h"

#include <atomic>
#include <chrono>

namespace depot::delivery {

namespace {

using namespace std::chrono_literals;
using client::Outgoing;
using client::Received;

// "DP" and 10 characters of an alphabet without look-alikes (no 0/O, 1/I).
std::string trackingIdFor(std::string_view orderId) {
    static constexpr char ALPHABET[] = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    std::uint64_t h = stableHash(orderId, 0x7261636b);
    std::string id = "DP";
    for (int i = 0; i < 10; ++i) {
        id += ALPHABET[h % 32];
        h /= 32;
    }
    return id;
}

class Orders final : public Service {
public:
    explicit Orders(const ServiceOptions& options) : Service("orders", options) {}
    ~Orders() override { stop(); }

    void start() override {
        client::SubscribeOptions options;
        options.inbox = makeInbox();
        options.prefetch = 32;
        options.retry.attempts = 5;
        options.retry.backoff = 200ms;
        auto& orders = subscriptions_.emplace_back(bus_.subscribe(ORDERS_QUEUE, options));
        orders.on<contracts::PlaceOrder>(
            [this](const Received<contracts::PlaceOrder>& command) { place(command); });
        orders.start();
    }

    std::string summary() const override {
        return "orders: " + std::to_string(placed_) + " placed, " + std::to_string(rejected_) +
               " rejected";
    }

private:
    void place(const Received<contracts::PlaceOrder>& command) {
        simulateWork();
        const auto order = command.body();
        const std::string from = order.getFromRegion();
        const std::string to = order.getToRegion();
        const auto distance = distanceKm(from, to);
        if (order.getOrderId().size() == 0)
            return reject(order, "an order needs an id");
        if (!distance)
            return reject(order, "we do not deliver from '" + from + "' to '" + to + "'");

        Outgoing<contracts::QuoteRequest> request;
        request->setWeightGrams(order.getWeightGrams());
        request->setDistanceKm(*distance);
        request->setSpeed(order.getSpeed());
        // Throws on timeout: the retry policy tries again, pricing may be restarting.
        auto quote = bus_.request<contracts::Quote>(request, PRICING_QUEUE, 5s);
        if (!quote->getAccepted())
            return reject(order, quote->getReason());

        Outgoing<contracts::OrderPlaced> placed;
        // One id per order, not per command: an order placed twice is announced once.
        placed->getMeta().setMessageId("OrderPlaced/" + std::string(order.getOrderId().cStr()));
        placed->setOrderId(order.getOrderId());
        placed->setTrackingId(trackingIdFor(order.getOrderId().cStr()));
        placed->setCustomer(order.getCustomer());
        placed->setFromRegion(from);
        placed->setToRegion(to);
        placed->setWeightGrams(order.getWeightGrams());
        placed->setSpeed(order.getSpeed());
        placed->setPriceCents(quote->getPriceCents());
        bus_.publish(placed, "order." + from + ".placed");
        ++placed_;
    }

    void reject(contracts::PlaceOrder::Reader order, const std::string& reason) {
        Outgoing<contracts::OrderRejected> rejected;
        if (order.getOrderId().size() > 0)
            rejected->getMeta().setMessageId("OrderRejected/" +
                                             std::string(order.getOrderId().cStr()));
        rejected->setOrderId(order.getOrderId());
        rejected->setCustomer(order.getCustomer());
        rejected->setFromRegion(order.getFromRegion());
        rejected->setReason(reason);
        const std::string region = isRegion(order.getFromRegion().cStr())
                                       ? std::string(order.getFromRegion().cStr())
                                       : std::string("unknown");
        bus_.publish(rejected, "order." + region + ".rejected");
        ++rejected_;
    }

    std::atomic<std::uint64_t> placed_{0};
    std::atomic<std::uint64_t> rejected_{0};
};

} // namespace

std::unique_ptr<Service> makeOrders(const ServiceOptions& options) {
    return std::make_unique<Orders>(options);
}

} // namespace depot::delivery
