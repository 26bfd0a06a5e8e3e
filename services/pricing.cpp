// pricing: answers QuoteRequest with a Quote over RPC (queue `pricing`). Stateless, so any
// number of instances may serve the same queue.
//
// The tariff: a base fee by speed, plus a fee per started kilogram and per 10 km. Parcels
// above 30 kg, and empty ones, are refused.

#include "services/addresses.h"
#include "services/factories.h"

#include "protocol/delivery.capnp.h"

#include <atomic>

namespace depot::delivery {

namespace {

using client::Outgoing;
using client::Received;

constexpr std::uint32_t MAX_WEIGHT_GRAMS = 30'000;

class Pricing final : public Service {
public:
    explicit Pricing(const ServiceOptions& options) : Service("pricing", options) {}
    ~Pricing() override { stop(); }

    void start() override {
        responders_.push_back(bus_.serve<contracts::QuoteRequest, contracts::Quote>(
            PRICING_QUEUE, [this](const Received<contracts::QuoteRequest>& request,
                                  Outgoing<contracts::Quote>& quote) {
                simulateWork();
                price(request.body(), quote.body());
                ++(quote->getAccepted() ? quoted_ : refused_);
            }));
    }

    std::string summary() const override {
        return "pricing: " + std::to_string(quoted_) + " quotes, " + std::to_string(refused_) +
               " refused";
    }

private:
    static void price(contracts::QuoteRequest::Reader request, contracts::Quote::Builder quote) {
        const std::uint32_t grams = request.getWeightGrams();
        if (grams == 0 || grams > MAX_WEIGHT_GRAMS) {
            quote.setAccepted(false);
            quote.setReason(grams == 0 ? "a parcel must weigh something"
                                       : "parcels above 30 kg are not accepted");
            return;
        }
        const bool express = request.getSpeed() == contracts::Speed::EXPRESS;
        const std::uint64_t base = express ? 990 : 490;
        const std::uint64_t kilos = (grams + 999) / 1000;
        const std::uint64_t perKilo = express ? 60 : 35;
        const std::uint64_t perTenKm = express ? 25 : 15;
        quote.setAccepted(true);
        quote.setPriceCents(base + kilos * perKilo + request.getDistanceKm() / 10 * perTenKm);
    }

    std::atomic<std::uint64_t> quoted_{0};
    std::atomic<std::uint64_t> refused_{0};
};

} // namespace

std::unique_ptr<Service> makePricing(const ServiceOptions& options) {
    return std::make_unique<Pricing>(options);
}

} // namespace depot::delivery
