#include "broker/net/flow_control.h"

#include "broker/core/vhost.h"

#include <algorithm>

namespace depot::net {

std::uint64_t FlowControl::highFor(const core::Queue& queue) {
    const std::uint64_t inMemory = queue.options().inMemoryLength();
    return queue.options().durable && inMemory > 0 ? std::min(HIGH, inMemory / 2) : HIGH;
}

bool FlowControl::hold(const std::string& vhost, const core::Queue& queue,
                       std::weak_ptr<void> owner, Release release) {
    auto it = std::find_if(held_.begin(), held_.end(), [&](const Held& h) {
        return h.queue == queue.name() && h.vhost == vhost;
    });
    if (it == held_.end()) {
        held_.push_back(
            Held{vhost, queue.name(), highFor(queue) / 4, queue.takenCount(), false, {}});
        it = std::prev(held_.end());
    }
    if (it->stuck)
        return false;
    it->waiters.push_back(Waiter{std::move(owner), std::move(release)});
    return true;
}

const core::Queue* FlowControl::find(const Held& held) const {
    const core::Vhost* vhost = broker_.findVhost(held.vhost);
    return vhost != nullptr ? vhost->findQueue(held.queue) : nullptr;
}

void FlowControl::releaseAll(Held& held) {
    std::vector<Waiter> waiters;
    waiters.swap(held.waiters);
    for (Waiter& waiter : waiters)
        if (!waiter.owner.expired())
            waiter.release();
}

void FlowControl::checkHeld() {
    // Released after the list is settled: a release may start a read, never a hold, but the
    // list must not change under the loop either way.
    std::vector<Held> done;
    for (auto it = held_.begin(); it != held_.end();) {
        const core::Queue* queue = find(*it);
        if (queue == nullptr || queue->consumerCount() == 0 || queue->readyCount() <= it->low) {
            done.push_back(std::move(*it));
            it = held_.erase(it);
        } else {
            ++it;
        }
    }
    for (Held& held : done)
        releaseAll(held);
}

void FlowControl::tick() {
    checkHeld();
    std::vector<Held*> stalled;
    for (Held& held : held_) {
        const core::Queue* queue = find(held);
        const std::uint64_t taken = queue != nullptr ? queue->takenCount() : held.taken;
        held.stuck = taken == held.taken;
        held.taken = taken;
        if (held.stuck)
            stalled.push_back(&held);
    }
    for (Held* held : stalled)
        releaseAll(*held);
}

} // namespace depot::net
