#include "client/ack_coalescer.h"

#include <algorithm>

namespace depot::client {

bool AckCoalescer::ack(std::uint64_t tag, bool multiple) {
    if (multiple) {
        if (tag == 0) { // "everything outstanding": sent as it is
            forgetUpTo(0);
            return false;
        }
        forgetUpTo(tag);
        pending_ = std::max(pending_, tag);
        return true;
    }
    if (!unacked_.empty() && unacked_.front() == tag) {
        unacked_.pop_front();
        pending_ = std::max(pending_, tag);
        return true;
    }
    // Out of order, or a tag this side does not know (the broker will say what is wrong).
    (void)forget(tag);
    return false;
}

void AckCoalescer::settledOtherwise(std::uint64_t tag, bool multiple) {
    if (multiple)
        forgetUpTo(tag);
    else
        (void)forget(tag);
}

std::uint64_t AckCoalescer::takePending() {
    const std::uint64_t tag = pending_;
    pending_ = 0;
    return tag;
}

void AckCoalescer::reset() {
    unacked_.clear();
    pending_ = 0;
}

void AckCoalescer::forgetUpTo(std::uint64_t tag) {
    if (tag == 0) {
        unacked_.clear();
        return;
    }
    while (!unacked_.empty() && unacked_.front() <= tag)
        unacked_.pop_front();
}

bool AckCoalescer::forget(std::uint64_t tag) {
    const auto at = std::lower_bound(unacked_.begin(), unacked_.end(), tag);
    if (at == unacked_.end() || *at != tag)
        return false;
    unacked_.erase(at);
    return true;
}

} // namespace depot::client
