#pragma once
// Where the runtime reads the time it passes into the core. SteadyClock is the real one;
// ManualClock moves only when told, for tests and deterministic simulations. Passed by
// reference to whoever needs it; there is no global clock.

#include "broker/core/time.h"

namespace depot::runtime {

class Clock {
public:
    virtual core::TimePoint now() const = 0;

protected:
    ~Clock() = default;
};

class SteadyClock final : public Clock {
public:
    core::TimePoint now() const override;
};

class ManualClock final : public Clock {
public:
    explicit ManualClock(core::TimePoint start = core::TimePoint{}) : now_(start) {}
    core::TimePoint now() const override { return now_; }
    void advance(core::Duration by) { now_ += by; }
    void set(core::TimePoint to) { now_ = to; }

private:
    core::TimePoint now_;
};

} // namespace depot::runtime
