#include "broker/core/key_hash.h"

#include <random>

namespace depot::core {

std::uint64_t makeKeyHashSeed() {
    // libstdc++'s random_device reads the CPU's or the kernel's entropy source: no clock needed
    // (the core never reads a clock; time is passed in).
    std::random_device device;
    return (std::uint64_t{device()} << 32) ^ device();
}

} // namespace depot::core
