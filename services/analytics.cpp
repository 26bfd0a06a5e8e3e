// analytics: an add-on that nobody else knows about. It binds its own queue, `analytics`, to
// every event exchange with "#" and counts events by type and region. Starting or stopping it
// changes nothing for the other services: that is what publish/subscribe buys.

#include "services/factories.h"

#include "protocol/delivery.capnp.h"

#include <map>
#include <mutex>

namespace depot::delivery {

namespace {

using client::Received;

class Analytics final : public Service {
public:
    explicit Analytics(const ServiceOptions& options) : Service("analytics", options) {}
    ~Analytics() override { stop(); }

    void start() override {
        client::SubscribeOptions options;
        options.inbox = makeInbox();
        options.prefetch = 128;
        auto& events = subscriptions_.emplace_back(bus_.subscribe("analytics", options));
        count<contracts::OrderPlaced>(events);
        count<contracts::OrderRejected>(events);
        count<contracts::CourierAssigned>(events);
        count<contracts::PackagePickedUp>(events);
        count<contracts::PackageInTransit>(events);
        count<contracts::PackageDelivered>(events);
        count<contracts::DeliveryFailed>(events);
        count<contracts::InvoiceIssued>(events);
        count<contracts::EmailSent>(events);
        events.start();
    }

    // "analytics: 1234 events; OrderPlaced 100, ..." in type order.
    std::string summary() const override {
        std::lock_guard lock(mutex_);
        std::uint64_t total = 0;
        std::string detail;
        for (const auto& [type, n] : byType_) {
            total += n;
            detail += (detail.empty() ? "" : ", ") + type + " " + std::to_string(n);
        }
        return "analytics: " + std::to_string(total) + " events" +
               (detail.empty() ? "" : "; " + detail);
    }

private:
    template <typename T> void count(client::Subscription& events) {
        events.on<T>(
            [this](const Received<T>& m) {
                simulateWork();
                std::lock_guard lock(mutex_);
                ++byType_[client::contractName<T>()];
                // The key's second word is the region (or the email's kind).
                const std::string& key = m.delivery().routingKey();
                const auto first = key.find('.');
                const auto second = key.find('.', first + 1);
                if (first != std::string::npos && second != std::string::npos)
                    ++byRegion_[key.substr(first + 1, second - first - 1)];
            },
            {"#"});
    }

    mutable std::mutex mutex_;
    std::map<std::string, std::uint64_t> byType_;
    std::map<std::string, std::uint64_t> byRegion_;
};

} // namespace

std::unique_ptr<Service> makeAnalytics(const ServiceOptions& options) {
    return std::make_unique<Analytics>(options);
}

} // namespace depot::delivery
