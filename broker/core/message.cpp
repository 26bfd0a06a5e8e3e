#include "broker/core/message.h"

namespace depot::core {

const char* deathReasonName(DeathReason reason) {
    switch (reason) {
    case DeathReason::REJECTED:
        return "rejected";
    case DeathReason::EXPIRED:
        return "expired";
    case DeathReason::MAXLEN:
        return "maxlen";
    }
    return "unknown";
}

} // namespace depot::core
