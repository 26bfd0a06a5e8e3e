#pragma once
// Time in the core is a value passed in by the caller: the core has no clock. The runtime reads
// a real clock and calls Broker::advanceTo(now); tests move a ManualClock and pass its value.

#include <chrono>

namespace depot::core {

// The clock type only names the epoch; the core never calls now() on it.
using TimePoint = std::chrono::steady_clock::time_point;
using Duration = std::chrono::steady_clock::duration;
using Milliseconds = std::chrono::milliseconds;

inline constexpr TimePoint NEVER = TimePoint::max();

} // namespace depot::core
