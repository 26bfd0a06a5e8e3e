// tracking: follows every package. It subscribes to each package event (one queue,
// `tracking.events`, bound to every event exchange with "#") and answers TrackRequest over RPC
// on `tracking` with the package's history.
//
// Idempotent by message id: an event it has recorded is not recorded again. With a state dir
// the histories are journaled and survive a restart.

#include "services/addresses.h"
#include "services/factories.h"
#include "services/journal.h"

#include "protocol/delivery.capnp.h"

#include <algorithm>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

namespace depot::delivery {

namespace {

using client::Outgoing;
using client::Received;

struct Step {
    std::int64_t micros = 0;
    std::string step;
    std::string detail;
};

std::string money(std::uint64_t cents) {
    return std::to_string(cents / 100) + "." + (cents % 100 < 10 ? "0" : "") +
           std::to_string(cents % 100);
}

class Tracking final : public Service {
public:
    explicit Tracking(const ServiceOptions& options)
        : Service("tracking", options),
          journal_(stateFile("journal"), [this](const Journal::Record& r) { replay(r); }) {}
    ~Tracking() override { stop(); }

    void start() override {
        client::SubscribeOptions options;
        options.prefetch = 64;
        auto& events = subscriptions_.emplace_back(bus_.subscribe("tracking.events", options));
        events
            .on<contracts::OrderPlaced>(
                [this](const Received<contracts::OrderPlaced>& m) {
                    record(m, m->getTrackingId(), "placed",
                           "order " + std::string(m->getOrderId().cStr()) + " from " +
                               m->getFromRegion().cStr() + " to " + m->getToRegion().cStr() + ", " +
                               money(m->getPriceCents()));
                },
                {"#"})
            .on<contracts::CourierAssigned>(
                [this](const Received<contracts::CourierAssigned>& m) {
                    record(m, m->getTrackingId(), "assigned",
                           std::string("courier ") + m->getCourierId().cStr());
                },
                {"#"})
            .on<contracts::PackagePickedUp>(
                [this](const Received<contracts::PackagePickedUp>& m) {
                    record(m, m->getTrackingId(), "picked-up",
                           std::string("in ") + m->getRegion().cStr());
                },
                {"#"})
            .on<contracts::PackageInTransit>(
                [this](const Received<contracts::PackageInTransit>& m) {
                    record(m, m->getTrackingId(), "in-transit",
                           std::string(m->getFromRegion().cStr()) + " to " +
                               m->getToRegion().cStr() + ", about " +
                               std::to_string(m->getEtaMinutes()) + " min");
                },
                {"#"})
            .on<contracts::PackageDelivered>(
                [this](const Received<contracts::PackageDelivered>& m) {
                    record(m, m->getTrackingId(), "delivered",
                           std::string("in ") + m->getRegion().cStr() + ", attempt " +
                               std::to_string(m->getAttempt()));
                },
                {"#"})
            .on<contracts::DeliveryFailed>(
                [this](const Received<contracts::DeliveryFailed>& m) {
                    record(m, m->getTrackingId(), m->getFinal() ? "returned" : "attempt-failed",
                           std::string("attempt ") + std::to_string(m->getAttempt()) + ": " +
                               m->getReason().cStr());
                },
                {"#"})
            .on<contracts::InvoiceIssued>(
                [this](const Received<contracts::InvoiceIssued>& m) {
                    record(m, m->getTrackingId(), "invoiced",
                           std::string(m->getInvoiceId().cStr()) + ", " +
                               money(m->getAmountCents()));
                },
                {"#"});
        events.start();

        responders_.push_back(bus_.serve<contracts::TrackRequest, contracts::TrackReply>(
            TRACKING_QUEUE, [this](const Received<contracts::TrackRequest>& request,
                                   Outgoing<contracts::TrackReply>& reply) {
                answer(request->getTrackingId().cStr(), reply.body());
            }));
    }

    std::string summary() const override {
        std::lock_guard lock(mutex_);
        return "tracking: " + std::to_string(histories_.size()) + " packages, " +
               std::to_string(seen_.size()) + " events";
    }

private:
    template <typename T>
    void record(const Received<T>& message, capnp::Text::Reader trackingId, const std::string& step,
                const std::string& detail) {
        simulateWork();
        const std::string id = message.meta().getMessageId().cStr();
        const std::string tracking = trackingId.cStr();
        const std::int64_t micros = message.meta().getTimestampMicros();
        std::lock_guard lock(mutex_);
        if (seen_.count(id))
            return; // recorded before a redelivery
        journal_.append({id, tracking, std::to_string(micros), step, detail});
        add(id, tracking, Step{micros, step, detail});
    }

    void replay(const Journal::Record& r) {
        const auto micros = r.size() >= 5 ? Journal::signedField(r[2]) : std::nullopt;
        if (micros)
            add(r[0], r[1], Step{*micros, r[3], r[4]});
    }

    void add(const std::string& id, const std::string& tracking, Step step) {
        if (!seen_.insert(id).second)
            return;
        auto& history = histories_[tracking];
        // By time of publication: events of one package come from several services.
        auto at =
            std::upper_bound(history.begin(), history.end(), step.micros,
                             [](std::int64_t micros, const Step& s) { return micros < s.micros; });
        history.insert(at, std::move(step));
    }

    void answer(const std::string& tracking, contracts::TrackReply::Builder reply) {
        std::lock_guard lock(mutex_);
        reply.setTrackingId(tracking);
        auto it = histories_.find(tracking);
        if (it == histories_.end() || it->second.empty())
            return reply.setFound(false);
        reply.setFound(true);
        const std::vector<Step>& steps = it->second;
        std::string status = steps.back().step;
        for (const Step& s : steps) // an invoice follows delivery; it is not a whereabouts
            if (s.step != "invoiced")
                status = s.step;
        reply.setStatus(status);
        auto history = reply.initHistory(static_cast<unsigned>(steps.size()));
        for (unsigned i = 0; i < steps.size(); ++i) {
            history[i].setTimestampMicros(steps[i].micros);
            history[i].setStep(steps[i].step);
            history[i].setDetail(steps[i].detail);
        }
    }

    mutable std::mutex mutex_;
    std::unordered_set<std::string> seen_;
    std::unordered_map<std::string, std::vector<Step>> histories_;
    Journal journal_; // after what its replay fills
};

} // namespace

std::unique_ptr<Service> makeTracking(const ServiceOptions& options) {
    return std::make_unique<Tracking>(options);
}

} // namespace depot::delivery
