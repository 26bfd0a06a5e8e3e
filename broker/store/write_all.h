#pragma once
// write(2) until every byte is written: a short write or EINTR continues, an error stops. One
// helper for every file Depot appends to or replaces (the message store, depotd's definitions,
// the client's inbox, the services' journals). Header-only: POSIX and nothing else.

#include <unistd.h>

#include <cerrno>
#include <string_view>

namespace depot::store {

// False on an error (errno says which); the file then holds an unknown prefix of `bytes`.
inline bool writeAll(int fd, std::string_view bytes) {
    const char* p = bytes.data();
    std::size_t left = bytes.size();
    while (left > 0) {
        const ssize_t n = ::write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        left -= static_cast<std::size_t>(n);
    }
    return true;
}

} // namespace depot::store
