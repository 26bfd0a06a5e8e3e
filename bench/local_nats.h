#pragma once
// nats-server (Debian's `nats-server`, found on PATH or in /usr/sbin) on 127.0.0.1 with a port
// of its own choosing, for `depot-bench e2e --compare local nats`: the baseline issue 3 names
// for a broker without acks. Stopped (SIGTERM) when this goes away.

#include <sys/types.h>

#include <string>

namespace depot::bench {

class LocalNats {
public:
    LocalNats(); // throws std::runtime_error when nats-server is missing or does not start
    ~LocalNats();
    LocalNats(const LocalNats&) = delete;
    LocalNats& operator=(const LocalNats&) = delete;

    const std::string& url() const { return url_; } // nats://127.0.0.1:PORT
    pid_t pid() const { return pid_; }

private:
    pid_t pid_ = -1;
    std::string dir_; // its ports file and log
    std::string url_;
};

} // namespace depot::bench
