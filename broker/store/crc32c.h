#pragma once
// CRC-32C (Castagnoli), the checksum of every store record: the one iSCSI, ext4 and LevelDB use,
// chosen for its error detection on storage and because x86 computes it in hardware (SSE 4.2),
// used here when the CPU has it.

#include <cstddef>
#include <cstdint>

namespace depot::store {

// `crc` continues an earlier value (0 to start).
std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc = 0);

} // namespace depot::store
