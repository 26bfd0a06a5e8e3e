// The business as separate processes against depotd (and once against RabbitMQ), as the README
// runs it: each service is a `delivery <service>` process and `delivery run --services none`
// places the orders and checks the outcome. Services are killed and restarted, stopped and started,
// added at runtime.

#include "tests/client/client_helpers.h"
#include "tests/support/process.h"
#include "tests/support/rabbitmq.h"

#include "services/outbox.h"
#include "services/service.h"

#include <doctest/doctest.h>

#include <csignal>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <thread>

using namespace std::chrono_literals;
using depot::tests::DepotdProcess;
using depot::tests::Process;
using depot::tests::TempDir;

namespace {

const std::string DELIVERY = std::string(DEPOT_BINARY_DIR) + "/delivery";

// A broker (depotd, started here, unless `broker` names one), a state dir, and the services,
// each its own process.
class Business {
public:
    explicit Business(std::map<std::string, std::vector<std::string>> extra = {},
                      std::string broker = "")
        : extra_(std::move(extra)), url_(std::move(broker)) {
        if (url_.empty()) {
            depotd_.emplace();
            url_ = depotd_->url();
        }
        for (const std::string& name : depot::delivery::serviceNames())
            start(name);
    }
    ~Business() {
        for (auto& [name, process] : services_)
            process->signal(SIGTERM);
        for (auto& [name, process] : services_)
            process->wait(10s);
    }

    void start(const std::string& name, const std::string& instance = "") {
        std::vector<std::string> args = {
            name, "--broker", url_, "--state-dir", state_.file("state"), "--status-interval", "0"};
        if (!instance.empty())
            args.insert(args.end(), {"--instance", instance});
        const auto extra = extra_.find(instance.empty() ? name : instance);
        if (extra != extra_.end())
            args.insert(args.end(), extra->second.begin(), extra->second.end());
        auto process = std::make_unique<Process>(DELIVERY, args);
        waitUntilRunning(*process);
        services_[instance.empty() ? name : instance] = std::move(process);
    }

    // SIGTERM and wait: the service finishes its handler, closes, prints its summary.
    std::string stop(const std::string& name) {
        Process& process = *services_.at(name);
        process.signal(SIGTERM);
        CHECK(process.wait(10s) == 0);
        std::string out = process.out();
        services_.erase(name);
        return out;
    }

    void kill(const std::string& name) {
        services_.at(name)->signal(SIGKILL);
        services_.at(name)->wait(10s);
        services_.erase(name);
    }

    std::unique_ptr<Process> run(std::uint64_t orders, std::uint64_t seed = 1) {
        return std::make_unique<Process>(
            DELIVERY,
            std::vector<std::string>{"run", "--broker", url_, "--services", "none", "--orders",
                                     std::to_string(orders), "--seed", std::to_string(seed),
                                     "--timeout", "90", "--no-progress"});
    }

    std::string url() const { return url_; }

    std::vector<depot::delivery::Email> outbox() const {
        return depot::delivery::readOutbox(state_.file("state/notifications.outbox"));
    }

private:
    static void waitUntilRunning(Process& process) {
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (process.out().find(": running on") == std::string::npos) {
            if (std::chrono::steady_clock::now() > deadline || process.wait(1ms) >= 0)
                FAIL("a service did not start: " << process.err());
            std::this_thread::sleep_for(5ms);
        }
    }

    std::optional<DepotdProcess> depotd_;
    TempDir state_;
    std::map<std::string, std::vector<std::string>> extra_;
    std::string url_;
    std::map<std::string, std::unique_ptr<Process>> services_;
};

// Checks the run's own verdict and the mail: each event mailed once, each package's in order.
void checkRun(Process& run, const std::vector<depot::delivery::Email>& outbox) {
    const int status = run.wait(120s);
    INFO(run.out());
    INFO(run.err());
    REQUIRE(status == 0);
    CHECK(run.out().find("checks                 ok") != std::string::npos);
    const auto problems = depot::delivery::outboxProblems(outbox);
    for (const auto& problem : problems)
        FAIL_CHECK(problem);
}

std::uint64_t counted(const std::string& text, const std::string& pattern) {
    std::smatch match;
    if (!std::regex_search(text, match, std::regex(pattern)))
        return 0;
    return std::stoull(match[1]);
}

} // namespace

TEST_CASE("delivery processes: the same processes run unchanged on RabbitMQ (amqp://)") {
    const auto rabbit = depot::tests::freshAmqpUrl();
    if (!rabbit) {
        MESSAGE("no test RabbitMQ node (rabbitmq-server not installed when cmake ran)");
        return;
    }
    Business business({}, *rabbit);
    auto run = business.run(100);
    checkRun(*run, business.outbox());
    CHECK(counted(run->out(), R"(orders +100 sent: (\d+) placed)") > 60);
}

TEST_CASE("delivery processes: the business runs as separate processes against depotd") {
    Business business;
    auto run = business.run(150);
    checkRun(*run, business.outbox());
    const std::string out = run->out();
    CHECK(counted(out, R"(orders +150 sent: (\d+) placed)") > 100);
    CHECK(business.outbox().size() == counted(out, R"(notifications sent +(\d+))"));
}

TEST_CASE("delivery processes: a service killed mid-run and restarted loses nothing, repeats "
          "nothing") {
    // Slow couriers and billing, so that the kill comes with work in their hands.
    Business business({{"couriers", {"--work-ms", "3"}}, {"billing", {"--work-ms", "2"}}});
    auto run = business.run(300);
    // Once packages are being delivered (so the couriers and billing have work in hand).
    REQUIRE(depot::tests::eventually(
        [&] {
            for (const auto& email : business.outbox())
                if (email.kind == "invoice")
                    return true;
            return false;
        },
        30s));
    business.kill("couriers");
    business.kill("billing");
    std::this_thread::sleep_for(300ms);
    business.start("couriers");
    business.start("billing");
    checkRun(*run, business.outbox());
    // Each delivered package invoiced once: one invoice mail per delivery mail.
    std::map<std::string, int> invoices, deliveries;
    for (const auto& email : business.outbox()) {
        if (email.kind == "invoice")
            ++invoices[email.trackingId];
        if (email.kind == "delivered")
            ++deliveries[email.trackingId];
    }
    CHECK(invoices.size() == deliveries.size());
    for (const auto& invoice : invoices) // (clang 14 cannot capture structured bindings)
        CHECK_MESSAGE(invoice.second == 1, invoice.first);
    // The restarted couriers had work left: the kill did come mid-run.
    CHECK(counted(business.stop("couriers"), R"(couriers: (\d+) delivered)") > 0);
}

TEST_CASE("delivery processes: mail waits while notifications is stopped, then goes in order") {
    Business business;
    business.stop("notifications");
    auto run = business.run(100);
    std::this_thread::sleep_for(1500ms); // orders are placed, delivered, invoiced meanwhile
    CHECK(business.outbox().empty());
    CHECK(run->wait(1ms) == -1); // the run waits for its mail
    business.start("notifications");
    checkRun(*run, business.outbox());
    CHECK_FALSE(business.outbox().empty());
}

TEST_CASE("delivery processes: a new subscriber joins at runtime, nothing else changes") {
    Business business({{"couriers", {"--work-ms", "2"}}});
    auto run = business.run(200);
    std::this_thread::sleep_for(300ms);
    business.start("analytics");
    checkRun(*run, business.outbox());
    const std::string analytics = business.stop("analytics");
    CHECK(counted(analytics, R"(analytics: (\d+) events)") > 0);
    CHECK(analytics.find("PackageDelivered") != std::string::npos);
}

TEST_CASE("delivery processes: two dispatch instances each take a fair share") {
    Business business({{"dispatch", {"--work-ms", "2"}}, {"dispatch-2", {"--work-ms", "2"}}});
    business.start("dispatch", "dispatch-2");
    auto run = business.run(200);
    checkRun(*run, business.outbox());
    const std::uint64_t first =
        counted(business.stop("dispatch"), R"(dispatch: (\d+) couriers assigned)");
    const std::uint64_t second =
        counted(business.stop("dispatch-2"), R"(dispatch-2: (\d+) couriers assigned)");
    CHECK(first + second >= 180); // the placed orders (the rest were rejected)
    CHECK(first >= 45);           // each about half; a quarter leaves room for a loaded machine
    CHECK(second >= 45);
}

TEST_CASE("delivery order and track: one order placed from the command line, then followed") {
    Business business;
    auto order = [&](std::vector<std::string> args) {
        args.insert(args.begin(), "order");
        args.insert(args.end(), {"--broker", business.url()});
        auto process = std::make_unique<Process>(DELIVERY, args);
        process->wait(20s);
        return process;
    };
    auto placed = order({"--from", "north", "--to", "east", "--weight", "2.5", "--express"});
    REQUIRE(placed->wait() == 0);
    const std::string tracking = placed->out().substr(0, placed->out().find('\n'));
    CHECK(tracking.rfind("DP", 0) == 0);
    CHECK(placed->out().find("placed: tracking id " + tracking) != std::string::npos);

    std::string history;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
        Process track(DELIVERY, {"track", tracking, "--broker", business.url()});
        REQUIRE(track.wait() == 0);
        history = track.out();
        if (history.find("invoiced") != std::string::npos ||
            history.find("returned") != std::string::npos)
            break;
        std::this_thread::sleep_for(20ms);
    }
    INFO(history);
    CHECK(history.find(tracking + ": ") == 0);
    for (const char* step : {"placed", "assigned", "picked-up", "in-transit"})
        CHECK(history.find(step) != std::string::npos);

    auto heavy = order({"--from", "north", "--to", "east", "--weight", "40"});
    CHECK(heavy->wait() == 1);
    CHECK(heavy->err().find("rejected: parcels above 30 kg are not accepted") != std::string::npos);
    auto nowhere = order({"--from", "mars", "--to", "east", "--weight", "1"});
    CHECK(nowhere->wait() == 2);
    Process unknown(DELIVERY, {"track", "DPNOSUCHTHING", "--broker", business.url()});
    CHECK(unknown.wait() == 1);
    CHECK(unknown.err() == "delivery: no package DPNOSUCHTHING\n");
}

TEST_CASE("delivery: usage errors exit 2, an unreachable broker exits 1") {
    Process badOption(DELIVERY, {"run", "--orders", "0"});
    CHECK(badOption.wait() == 2);
    Process noCommand(DELIVERY, {});
    CHECK(noCommand.wait() == 2);
    Process badService(DELIVERY, {"run", "--services", "marketing"});
    CHECK(badService.wait() == 2);
    CHECK(badService.err() == "delivery: --services: no service 'marketing'\n");
    Process badUrl(DELIVERY, {"dispatch", "--broker", "http://example.org/"});
    CHECK(badUrl.wait() == 2);
    // Port 1 on loopback: nothing listens there.
    Process noBroker(DELIVERY, {"dispatch", "--broker", "depot://127.0.0.1:1/"});
    CHECK(noBroker.wait() == 1);
    CHECK(noBroker.err().find("delivery: ") == 0);
}
