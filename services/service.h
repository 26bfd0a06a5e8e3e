#pragma once
// What every service of the business has: its own connection to the broker (so that one
// service's slow or retrying handler never holds up another's), a typed bus on it, and where
// it keeps what it must remember across a restart. A service knows the contracts and the
// addresses, never another service.
//
// Lifecycle: construct (connects), start() (declares its queues and bindings and consumes),
// stop() or destruction (cancels its consumers and closes: the broker requeues what it had not
// acked, for the next instance to take).

#include "client/bus.h"
#include "client/connection.h"
#include "client/inbox.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace depot::delivery {

struct ServiceOptions {
    std::string broker = "embedded:";
    // Where the service keeps its inbox and ledgers; "" = in memory, nothing survives a
    // restart. Give each instance its own (or its own --instance name in a shared one).
    std::filesystem::path stateDir;
    std::string instance;        // "" = the service's name; shown to operators and in file names
    std::uint64_t seed = 1;      // couriers: the dice for failed deliveries
    std::uint32_t couriers = 20; // dispatch: couriers on the road, over all regions
    std::chrono::milliseconds workTime{0}; // simulated work per message handled
    // notifications: "" = <stateDir>/<instance>.outbox, or ./delivery-outbox.txt without a
    // state dir (then started empty).
    std::filesystem::path outbox;
};

class Service {
public:
    virtual ~Service();
    Service(const Service&) = delete;
    Service& operator=(const Service&) = delete;

    const std::string& name() const { return name_; }
    const std::string& instance() const { return instance_; }
    virtual void start() = 0;
    // Derived destructors call it first: handlers use the derived object.
    void stop();
    // One line for operators: what it has done so far.
    virtual std::string summary() const = 0;
    client::BusStats busStats() const { return bus_.stats(); }

protected:
    Service(std::string name, const ServiceOptions& options);

    // The inbox of this instance: under the state dir when there is one.
    std::shared_ptr<client::Inbox> makeInbox();
    // A file of this instance's in the state dir; "" when the service keeps no state.
    std::filesystem::path stateFile(std::string_view suffix) const;
    void simulateWork() const;

    ServiceOptions options_;
    std::string name_;
    std::string instance_;
    std::shared_ptr<client::Connection> connection_;
    client::Bus bus_;
    std::vector<client::Subscription> subscriptions_;
    std::vector<client::Consumer> responders_;
    bool stopped_ = false;
};

// The business's services, in the order `delivery run` starts them.
const std::vector<std::string>& serviceNames();
// Every service name a `delivery <service>` command accepts (serviceNames() and the optional
// ones, such as analytics).
const std::vector<std::string>& runnableServices();
// Throws std::invalid_argument for an unknown name.
std::unique_ptr<Service> makeService(std::string_view name, const ServiceOptions& options);

} // namespace depot::delivery
