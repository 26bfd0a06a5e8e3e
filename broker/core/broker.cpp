#include "broker/core/broker.h"

#include "broker/core/names.h"

#include <algorithm>

namespace depot::core {

Broker::Broker() {
    vhosts_.emplace("/", std::make_unique<Vhost>("/"));
}

Vhost* Broker::findVhost(std::string_view name) {
    auto it = vhosts_.find(name);
    return it == vhosts_.end() ? nullptr : it->second.get();
}

Result<Vhost*> Broker::addVhost(std::string_view name) {
    if (name.empty())
        return makeError(ErrorCode::PRECONDITION_FAILED, "a vhost name cannot be empty");
    if (Status s = validateName("vhost", name); !s)
        return s.error();
    auto [it, inserted] = vhosts_.try_emplace(std::string(name), nullptr);
    if (inserted)
        it->second = std::make_unique<Vhost>(std::string(name));
    return it->second.get();
}

Status Broker::deleteVhost(std::string_view name) {
    auto it = vhosts_.find(name);
    if (it == vhosts_.end())
        return makeError(ErrorCode::NOT_FOUND, "no vhost '" + std::string(name) + "'");
    if (name == "/")
        return makeError(ErrorCode::ACCESS_REFUSED, "the default vhost '/' cannot be deleted");
    vhosts_.erase(it);
    return {};
}

std::vector<std::string> Broker::vhostNames() const {
    std::vector<std::string> names;
    for (const auto& [name, vhost] : vhosts_)
        names.push_back(name);
    return names;
}

void Broker::advanceTo(TimePoint now) {
    for (auto& [name, vhost] : vhosts_)
        vhost->advanceTo(now);
}

TimePoint Broker::nextDeadline() const {
    TimePoint deadline = NEVER;
    for (const auto& [name, vhost] : vhosts_)
        deadline = std::min(deadline, vhost->nextDeadline());
    return deadline;
}

} // namespace depot::core
