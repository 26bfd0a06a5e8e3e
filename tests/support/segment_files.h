#pragma once
// The message store's segment files as a test looks at them from outside (broker/store/
// message_store.h has the format).

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace depot::tests {

// Where a segment file's records end: the store keeps the file ahead of them in zeros. Tests
// write records that never end in a zero byte (their last field is a queue name or a body).
inline std::uintmax_t segmentRecordsEnd(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    const std::string data((std::istreambuf_iterator<char>(in)), {});
    const std::size_t last = data.find_last_not_of('\0');
    return last == std::string::npos ? 0 : last + 1;
}

} // namespace depot::tests
