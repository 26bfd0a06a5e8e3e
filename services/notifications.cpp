// notifications: the mail service. Every customer-facing event lands in one FIFO queue,
// `notifications`, consumed by one consumer with a prefetch of 1, and each becomes an email
// appended to the outbox file (services/outbox.h) in queue order: a customer's mail comes out
// in the order their parcel's life happened. While the service is stopped the events wait in
// the queue; when it starts again, the mail goes out, in order. Each email sent is announced as
// EmailSent.
//
// Run a single instance: two would compete for the queue and interleave the outbox. Exactly
// once per event: the outbox itself records the id of the event each email came from, and is
// read back on start (with a state dir; without one it starts empty).

#include "services/factories.h"
#include "services/journal.h"
#include "services/outbox.h"

#include "protocol/delivery.capnp.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <unordered_set>

namespace depot::delivery {

namespace {

using client::Outgoing;
using client::Received;

std::string money(std::uint64_t cents) {
    return std::to_string(cents / 100) + "." + (cents % 100 < 10 ? "0" : "") +
           std::to_string(cents % 100);
}

std::filesystem::path outboxFile(const ServiceOptions& options, const std::string& instance) {
    if (!options.outbox.empty())
        return options.outbox;
    if (!options.stateDir.empty())
        return options.stateDir / (instance + ".outbox");
    return "delivery-outbox.txt";
}

std::int64_t nowMicros() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

class Notifications final : public Service {
public:
    explicit Notifications(const ServiceOptions& options)
        : Service("notifications", options),
          outbox_(
              outboxFile(options, instance()),
              [this](const Journal::Record& r) {
                  const auto sequence = r.size() >= 8 ? Journal::unsignedField(r[0]) : std::nullopt;
                  if (sequence) {
                      sent_.insert(r[6]);
                      sequence_ = std::max(sequence_, *sequence);
                  }
              },
              options.stateDir.empty()) {}
    ~Notifications() override { stop(); }

    void start() override {
        client::SubscribeOptions options;
        options.prefetch = 1; // in order, one at a time
        auto& mail = subscriptions_.emplace_back(bus_.subscribe("notifications", options));
        mail.on<contracts::OrderPlaced>(
                [this](const Received<contracts::OrderPlaced>& m) {
                    send(m, m->getCustomer(), "order-placed", m->getTrackingId(), m->getOrderId(),
                         "Order " + std::string(m->getOrderId().cStr()) +
                             " confirmed: tracking id " + m->getTrackingId().cStr() + ", " +
                             money(m->getPriceCents()));
                },
                {"#"})
            .on<contracts::OrderRejected>(
                [this](const Received<contracts::OrderRejected>& m) {
                    send(m, m->getCustomer(), "order-rejected", "", m->getOrderId(),
                         "Order " + std::string(m->getOrderId().cStr()) +
                             " not accepted: " + m->getReason().cStr());
                },
                {"#"})
            .on<contracts::DeliveryFailed>(
                [this](const Received<contracts::DeliveryFailed>& m) {
                    const std::string tracking = m->getTrackingId();
                    if (m->getFinal())
                        send(m, m->getCustomer(), "returned", m->getTrackingId(), "",
                             "Parcel " + tracking + " is going back to the sender");
                    else
                        send(m, m->getCustomer(), "attempt-failed", m->getTrackingId(), "",
                             "We missed you: parcel " + tracking + ", attempt " +
                                 std::to_string(m->getAttempt()) + " (" + m->getReason().cStr() +
                                 ")");
                },
                {"#"})
            .on<contracts::PackageDelivered>(
                [this](const Received<contracts::PackageDelivered>& m) {
                    send(m, m->getCustomer(), "delivered", m->getTrackingId(), "",
                         "Your parcel " + std::string(m->getTrackingId().cStr()) +
                             " was delivered");
                },
                {"#"})
            .on<contracts::InvoiceIssued>(
                [this](const Received<contracts::InvoiceIssued>& m) {
                    send(m, m->getCustomer(), "invoice", m->getTrackingId(), "",
                         "Invoice " + std::string(m->getInvoiceId().cStr()) + " for parcel " +
                             m->getTrackingId().cStr() + ": " + money(m->getAmountCents()));
                },
                {"#"});
        mail.start();
    }

    std::string summary() const override {
        std::lock_guard lock(mutex_);
        return "notifications: " + std::to_string(written_) + " emails sent (outbox " +
               outbox_.file().string() + ")";
    }

private:
    template <typename T>
    void send(const Received<T>& cause, capnp::Text::Reader customer, const std::string& kind,
              capnp::Text::Reader trackingId, capnp::Text::Reader orderId,
              const std::string& subject) {
        simulateWork();
        const std::string causeId = cause.meta().getMessageId().cStr();
        {
            std::lock_guard lock(mutex_);
            // Mailed already when this is a redelivery; EmailSent goes out again all the same
            // (with the same id), in case the crash came between the two.
            if (!sent_.count(causeId)) {
                ++sequence_;
                outbox_.append({std::to_string(sequence_), std::to_string(nowMicros()),
                                customer.cStr(), kind, trackingId.cStr(), orderId.cStr(), causeId,
                                subject});
                sent_.insert(causeId);
                ++written_;
            }
        }
        Outgoing<contracts::EmailSent> sent;
        sent->setCustomer(customer);
        sent->setSubject(subject);
        sent->setKind(kind);
        sent->setTrackingId(trackingId);
        sent->setOrderId(orderId);
        bus_.publish(sent, "email." + kind + ".sent");
    }

    mutable std::mutex mutex_;
    std::unordered_set<std::string> sent_;
    std::uint64_t sequence_ = 0;
    std::uint64_t written_ = 0;
    Journal outbox_; // after what its replay fills
};

} // namespace

std::unique_ptr<Service> makeNotifications(const ServiceOptions& options) {
    return std::make_unique<Notifications>(options);
}

} // namespace depot::delivery
