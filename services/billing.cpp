// billing: invoices each delivered package exactly once. It learns prices from OrderPlaced and
// invoices on PackageDelivered; both arrive on its one queue, `billing`, in the order they
// happened, so a package's price is known before its delivery.
//
// Exactly once: the ledger (journaled with a state dir) holds one invoice per tracking id. A
// delivery seen again (redelivered after a crash, or reported twice) issues no second invoice;
// it announces the existing one again, under the same message id, so that a crash between the
// ledger and the announcement loses nothing and subscribers drop the repeat.

#include "services/factories.h"
#include "services/journal.h"

#include "protocol/delivery.capnp.h"

#include <mutex>
#include <stdexcept>
#include <unordered_map>

namespace depot::delivery {

namespace {

using client::Outgoing;
using client::Received;

struct Invoice {
    std::string invoiceId;
    std::uint64_t cents = 0;
    std::string customer;
    std::string region;
};

class Billing final : public Service {
public:
    explicit Billing(const ServiceOptions& options)
        : Service("billing", options),
          ledger_(stateFile("ledger"), [this](const Journal::Record& r) { replay(r); }) {}
    ~Billing() override { stop(); }

    void start() override {
        client::SubscribeOptions options;
        options.inbox = makeInbox();
        options.prefetch = 32;
        auto& billing = subscriptions_.emplace_back(bus_.subscribe("billing", options));
        billing
            .on<contracts::OrderPlaced>(
                [this](const Received<contracts::OrderPlaced>& m) {
                    std::lock_guard lock(mutex_);
                    const std::string tracking = m->getTrackingId();
                    if (prices_.count(tracking))
                        return;
                    ledger_.append({"price", tracking, std::to_string(m->getPriceCents())});
                    prices_[tracking] = m->getPriceCents();
                },
                {"#"})
            .on<contracts::PackageDelivered>(
                [this](const Received<contracts::PackageDelivered>& m) { invoice(m.body()); },
                {"#"});
        billing.start();
    }

    std::string summary() const override {
        std::lock_guard lock(mutex_);
        std::uint64_t total = 0;
        for (const auto& [tracking, invoice] : invoices_)
            total += invoice.cents;
        return "billing: " + std::to_string(invoices_.size()) + " invoices, " +
               std::to_string(total / 100) + "." + std::to_string(total % 100 / 10) +
               std::to_string(total % 10) + " invoiced";
    }

private:
    void invoice(contracts::PackageDelivered::Reader delivered) {
        simulateWork();
        const std::string tracking = delivered.getTrackingId();
        Invoice invoice;
        {
            std::lock_guard lock(mutex_);
            auto existing = invoices_.find(tracking);
            if (existing != invoices_.end()) {
                invoice = existing->second;
            } else {
                auto price = prices_.find(tracking);
                if (price == prices_.end())
                    throw std::runtime_error("no price known for " + tracking +
                                             " (its OrderPlaced never reached billing)");
                invoice = Invoice{"INV-" + tracking, price->second, delivered.getCustomer(),
                                  delivered.getRegion()};
                ledger_.append({"invoice", tracking, invoice.invoiceId,
                                std::to_string(invoice.cents), invoice.customer, invoice.region});
                invoices_[tracking] = invoice;
            }
        }
        Outgoing<contracts::InvoiceIssued> issued;
        issued->getMeta().setMessageId("InvoiceIssued/" + invoice.invoiceId); // one per invoice
        issued->setInvoiceId(invoice.invoiceId);
        issued->setTrackingId(tracking);
        issued->setCustomer(invoice.customer);
        issued->setRegion(invoice.region);
        issued->setAmountCents(invoice.cents);
        bus_.publish(issued, "invoice." + invoice.region + ".issued");
    }

    void replay(const Journal::Record& r) {
        if (r.size() >= 3 && r[0] == "price") {
            if (const auto cents = Journal::unsignedField(r[2]))
                prices_[r[1]] = *cents;
        } else if (r.size() >= 6 && r[0] == "invoice") {
            if (const auto cents = Journal::unsignedField(r[3]))
                invoices_[r[1]] = Invoice{r[2], *cents, r[4], r[5]};
        }
    }

    mutable std::mutex mutex_;
    std::unordered_map<std::string, std::uint64_t> prices_;
    std::unordered_map<std::string, Invoice> invoices_;
    Journal ledger_; // after what its replay fills
};

} // namespace

std::unique_ptr<Service> makeBilling(const ServiceOptions& options) {
    return std::make_unique<Billing>(options);
}

} // namespace depot::delivery
