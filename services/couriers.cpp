// couriers: the couriers on the road, simulated. For each CourierAssigned it picks the package
// up (PackagePickedUp), drives it to the destination region (PackageInTransit, when that is
// another region) and tries to hand it over, up to MAX_ATTEMPTS times: each failed attempt is a
// DeliveryFailed, the last one final (the package goes back to the sender); a success is a
// PackageDelivered.
//
// Whether an attempt fails is decided by dice seeded with --seed and the tracking id, so a run
// with the same seed fails the same packages, and a redelivered assignment replays the same
// story with the same message ids.

#include "services/factories.h"
#include "services/world.h"

#include "protocol/delivery.capnp.h"

#include <array>
#include <atomic>

namespace depot::delivery {

namespace {

using client::Outgoing;
using client::Received;

constexpr std::uint32_t MAX_ATTEMPTS = 3;
constexpr double FAILURE_CHANCE = 0.20;         // per attempt, standard
constexpr double EXPRESS_FAILURE_CHANCE = 0.10; // express couriers call ahead
constexpr std::array<const char*, 4> REASONS{"nobody home", "address not found", "parcel refused",
                                             "access code wrong"};

class Couriers final : public Service {
public:
    explicit Couriers(const ServiceOptions& options) : Service("couriers", options) {}
    ~Couriers() override { stop(); }

    void start() override {
        client::SubscribeOptions options;
        options.inbox = makeInbox();
        options.prefetch = 8;
        auto& assignments = subscriptions_.emplace_back(bus_.subscribe("couriers", options));
        assignments.on<contracts::CourierAssigned>(
            [this](const Received<contracts::CourierAssigned>& m) { deliver(m.body()); },
            {"package.*.assigned"});
        assignments.start();
    }

    std::string summary() const override {
        return "couriers: " + std::to_string(delivered_) + " delivered, " +
               std::to_string(failedAttempts_) + " failed attempts, " + std::to_string(returned_) +
               " returned to sender";
    }

private:
    void deliver(contracts::CourierAssigned::Reader job) {
        simulateWork();
        const std::string tracking = job.getTrackingId();
        const std::string courier = job.getCourierId();
        const std::string from = job.getFromRegion();
        const std::string to = job.getToRegion();
        if (!isRegion(from) || !isRegion(to))
            throw std::invalid_argument("unknown region in assignment of " + tracking);

        Outgoing<contracts::PackagePickedUp> picked;
        picked->setTrackingId(tracking);
        picked->setCourierId(courier);
        picked->setRegion(from);
        bus_.publish(picked, "package." + from + ".picked-up");

        if (from != to) {
            Outgoing<contracts::PackageInTransit> transit;
            transit->setTrackingId(tracking);
            transit->setCourierId(courier);
            transit->setFromRegion(from);
            transit->setToRegion(to);
            transit->setEtaMinutes(*distanceKm(from, to) * 60 / 80); // 80 km/h on average
            bus_.publish(transit, "package." + from + ".in-transit");
        }

        const bool express = job.getSpeed() == contracts::Speed::EXPRESS;
        const double chance = express ? EXPRESS_FAILURE_CHANCE : FAILURE_CHANCE;
        for (std::uint32_t attempt = 1; attempt <= MAX_ATTEMPTS; ++attempt) {
            if (dice(options_.seed, tracking, attempt) >= chance) {
                Outgoing<contracts::PackageDelivered> delivered;
                delivered->setTrackingId(tracking);
                delivered->setCourierId(courier);
                delivered->setRegion(to);
                delivered->setCustomer(job.getCustomer());
                delivered->setAttempt(attempt);
                bus_.publish(delivered, "package." + to + ".delivered");
                ++delivered_;
                return;
            }
            Outgoing<contracts::DeliveryFailed> failed;
            failed->setTrackingId(tracking);
            failed->setCourierId(courier);
            failed->setRegion(to);
            failed->setCustomer(job.getCustomer());
            failed->setAttempt(attempt);
            failed->setReason(REASONS[stableHash(tracking, attempt) % REASONS.size()]);
            failed->setFinal(attempt == MAX_ATTEMPTS);
            bus_.publish(failed, "package." + to + ".failed");
            ++failedAttempts_;
        }
        ++returned_;
    }

    std::atomic<std::uint64_t> delivered_{0};
    std::atomic<std::uint64_t> failedAttempts_{0};
    std::atomic<std::uint64_t> returned_{0};
};

} // namespace

std::unique_ptr<Service> makeCouriers(const ServiceOptions& options) {
    return std::make_unique<Couriers>(options);
}

} // namespace depot::delivery
