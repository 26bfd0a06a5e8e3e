#include "services/service.h"

#include "services/factories.h"

#include <cstdio>
#include <map>
#include <stdexcept>
#include <thread>

namespace depot::delivery {

namespace {

std::shared_ptr<client::Connection> connect(const ServiceOptions& options,
                                            const std::string& instance) {
    client::ConnectionOptions connection;
    connection.clientName = instance;
    return client::Connection::open(options.broker, connection);
}

using Factory = std::unique_ptr<Service> (*)(const ServiceOptions&);

const std::map<std::string, Factory, std::less<>>& factories() {
    static const std::map<std::string, Factory, std::less<>> all{
        {"orders", makeOrders},     {"pricing", makePricing},
        {"dispatch", makeDispatch}, {"couriers", makeCouriers},
        {"tracking", makeTracking}, {"notifications", makeNotifications},
        {"billing", makeBilling},   {"analytics", makeAnalytics},
    };
    return all;
}

} // namespace

Service::Service(std::string name, const ServiceOptions& options)
    : options_(options), name_(std::move(name)),
      instance_(options.instance.empty() ? name_ : options.instance),
      connection_(connect(options, instance_)), bus_(connection_, instance_) {
    if (!options_.stateDir.empty())
        std::filesystem::create_directories(options_.stateDir);
    // What no caller waited for: a handler that gave up, a message its error queue refused, a
    // publish the broker dropped. An operator reads it on stderr.
    connection_->onError([instance = instance_](const client::Error& error) {
        std::fprintf(stderr, "%s: %s\n", instance.c_str(), error.what());
    });
}

Service::~Service() {
    stop();
}

void Service::stop() {
    if (stopped_)
        return;
    stopped_ = true;
    subscriptions_.clear(); // each cancels its consumer, waiting for a handler in progress
    responders_.clear();
    try {
        if (connection_)
            connection_->close();
    } catch (const std::exception& e) { // called from destructors: never throw
        std::fprintf(stderr, "%s: closing: %s\n", instance_.c_str(), e.what());
    }
}

std::shared_ptr<client::Inbox> Service::makeInbox() {
    const std::filesystem::path file = stateFile("inbox");
    return file.empty() ? std::make_shared<client::Inbox>() : std::make_shared<client::Inbox>(file);
}

std::filesystem::path Service::stateFile(std::string_view suffix) const {
    if (options_.stateDir.empty())
        return {};
    return options_.stateDir / (instance_ + "." + std::string(suffix));
}

void Service::simulateWork() const {
    if (options_.workTime.count() > 0)
        std::this_thread::sleep_for(options_.workTime);
}

const std::vector<std::string>& serviceNames() {
    static const std::vector<std::string> names{"pricing",  "orders",        "dispatch", "couriers",
                                                "tracking", "notifications", "billing"};
    return names;
}

const std::vector<std::string>& runnableServices() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> all = serviceNames();
        all.push_back("analytics");
        return all;
    }();
    return names;
}

std::unique_ptr<Service> makeService(std::string_view name, const ServiceOptions& options) {
    auto it = factories().find(name);
    if (it == factories().end())
        throw std::invalid_argument("no service '" + std::string(name) + "'");
    return it->second(options);
}

} // namespace depot::delivery
