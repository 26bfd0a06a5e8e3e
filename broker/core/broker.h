#pragma once
// The routing core's root object: a set of virtual hosts, starting with "/". Everything below
// it is plain, single-threaded C++ with no I/O and no clock: the caller (the runtime, depotd,
// a test) owns the thread, passes the time in, and calls advanceTo(nextDeadline()) when due.
//
//   depot::core::Broker broker;
//   depot::core::Channel& ch = broker.defaultVhost().openChannel();
//   (void)ch.declareQueue("tasks", {}, now);
//   (void)ch.publish("", "tasks", {}, "hello", false, now);

#include "broker/core/vhost.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace depot::core {

class Broker {
public:
    Broker();

    Vhost& defaultVhost() { return *vhosts_.at("/"); }
    Vhost* findVhost(std::string_view name);
    Result<Vhost*> addVhost(std::string_view name);
    // Closes the vhost's channels (requeueing nothing: the queues go too).
    Status deleteVhost(std::string_view name);
    std::vector<std::string> vhostNames() const;

    void advanceTo(TimePoint now);
    TimePoint nextDeadline() const;

private:
    std::map<std::string, std::unique_ptr<Vhost>, std::less<>> vhosts_;
};

} // namespace depot::core
