#include "broker/net/flow_control.h"

#include "broker/core/vhost.h"

#include <algorithm>

namespace depot::net {

std::uint64_t FlowControl::highFor(const core::Queue& queue) {
    const std::uint64_t inMemory = queue.options().inMemoryLength();
    return queue.options().durable && inMemory > 0 ? std::clamp(inMemory / 2, LEAST, HIGH) : HIGH;
}

FlowControl::Pressure FlowControl::pressure(std::span<const core::Queue* const> routed) {
    Pressure pressure;
    for (const core::Queue* queue : routed) {
        // Below LEAST no mark is passed: one comparison for a queue that keeps up.
        if (queue->readyCount() <= LEAST || queue->consumerCount() == 0)
            continue;
        pressure.behind |= queue->readyCount() > lowFor(*queue);
        if (pressure.over == nullptr && queue->readyCount() > highFor(*queue))
            pressure.over = queue;
    }
    return pressure;
}

bool FlowControl::hold(const std::string& vhost, const core::Queue& queue,
                       std::weak_ptr<void> owner, Release release) {
    auto it = std::find_if(held_.begin(), held_.end(), [&](const Held& h) {
        return h.queue == queue.name() && h.vhost == vhost;
    });
    if (it == held_.end()) {
        held_.push_back(Held{vhost, queue.name(), lowFor(queue), queue.readyCount(), 0, false, {}});
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
    std::vector<std::size_t> stalled; // indices: a release must not see the list change
    for (std::size_t i = 0; i < held_.size(); ++i) {
        Held& held = held_[i];
        const core::Queue* queue = find(held);
        const std::uint64_t ready = queue != nullptr ? queue->readyCount() : 0;
        if (ready < held.ready) {
            held.quietTicks = 0;
            held.stuck = false;
        } else if (!held.stuck && ++held.quietTicks >= STUCK_TICKS) { // counts no further
            held.stuck = true;
            stalled.push_back(i);
        }
        held.ready = ready;
    }
    for (std::size_t i : stalled)
        releaseAll(held_[i]);
}

} // namespace depot::net
