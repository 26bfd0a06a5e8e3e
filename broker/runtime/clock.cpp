#include "broker/runtime/clock.h"

#include <chrono>

namespace depot::runtime {

core::TimePoint SteadyClock::now() const {
    return std::chrono::steady_clock::now();
}

} // namespace depot::runtime
