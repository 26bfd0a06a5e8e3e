#pragma once
// The RabbitMQ node that ctest starts for the amqp:// tests (the `rabbitmq` fixture:
// scripts/rabbitmq-node.sh, on loopback, with vhosts t1..tN). ctest passes its folder in
// DEPOT_TEST_RABBITMQ; each call of freshAmqpUrl() hands out a vhost no other test uses, across
// the test processes ctest runs at once (a counter file under flock), so tests share no state.
// Without DEPOT_TEST_RABBITMQ (RabbitMQ not installed when cmake ran) there is no amqp:// URL.

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>

namespace depot::tests {

inline std::optional<std::string> freshAmqpUrl() {
    const char* dir = std::getenv("DEPOT_TEST_RABBITMQ");
    if (dir == nullptr || *dir == '\0')
        return std::nullopt;
    const std::string base(dir);
    std::string url;
    int vhosts = 0;
    std::ifstream(base + "/url") >> url;
    std::ifstream(base + "/vhosts") >> vhosts;
    REQUIRE_MESSAGE(!url.empty(),
                    "no RabbitMQ node is running in " << base << " (its ctest fixture failed?)");
    const int fd = ::open((base + "/next-vhost").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(::flock(fd, LOCK_EX) == 0);
    char text[32] = {};
    const ssize_t n = ::pread(fd, text, sizeof text - 1, 0);
    const int next = (n > 0 ? std::atoi(text) : 0) + 1;
    const std::string written = std::to_string(next) + "\n";
    const bool saved =
        ::pwrite(fd, written.data(), written.size(), 0) == static_cast<ssize_t>(written.size());
    ::close(fd); // releases the lock
    REQUIRE(saved);
    REQUIRE_MESSAGE(next <= vhosts, "all " << vhosts
                                           << " vhosts of the test RabbitMQ node are used: start "
                                              "it with more (scripts/rabbitmq-node.sh)");
    return url + "/t" + std::to_string(next);
}

} // namespace depot::tests
