#include "broker/store/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#include <nmmintrin.h>
#endif

namespace depot::store {

namespace {

constexpr std::uint32_t POLYNOMIAL = 0x82f63b78; // reflected Castagnoli

constexpr std::array<std::uint32_t, 256> makeTable() {
    std::array<std::uint32_t, 256> table{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; ++k)
            c = (c & 1) ? (c >> 1) ^ POLYNOMIAL : c >> 1;
        table[i] = c;
    }
    return table;
}

constexpr std::array<std::uint32_t, 256> TABLE = makeTable();

std::uint32_t software(const unsigned char* p, std::size_t size, std::uint32_t crc) {
    for (std::size_t i = 0; i < size; ++i)
        crc = TABLE[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint32_t hardware(const unsigned char* p, std::size_t size,
                                                         std::uint32_t crc) {
    std::uint64_t c = crc;
    while (size >= 8) {
        std::uint64_t word;
        std::memcpy(&word, p, 8);
        c = _mm_crc32_u64(c, word);
        p += 8;
        size -= 8;
    }
    std::uint32_t c32 = static_cast<std::uint32_t>(c);
    while (size-- > 0)
        c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}

bool hasSse42() {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_SSE4_2) != 0;
}
#endif

} // namespace

std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc) {
    const auto* p = static_cast<const unsigned char*>(data);
    crc = ~crc;
#if defined(__x86_64__)
    static const bool hardwareAvailable = hasSse42();
    crc = hardwareAvailable ? hardware(p, size, crc) : software(p, size, crc);
#else
    crc = software(p, size, crc);
#endif
    return ~crc;
}

} // namespace depot::store
