#pragma once
// depotd (found next to depot-bench) on 127.0.0.1 with a kernel-chosen port, for the benchmarks
// that need a broker of their own; stopped (SIGTERM) when this goes away. On disk, its data dir
// is a fresh one in /tmp unless given (a restart on the data dir of one killed before).

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace depot::bench {

class LocalDepotd {
public:
    // onDisk: --data-dir (`dataDir`, or a fresh one removed with this); else --in-memory.
    explicit LocalDepotd(bool onDisk, std::string dataDir = "");
    ~LocalDepotd();
    LocalDepotd(const LocalDepotd&) = delete;
    LocalDepotd& operator=(const LocalDepotd&) = delete;

    const std::string& url() const { return url_; }
    const std::string& dataDir() const { return dataDir_; }
    pid_t pid() const { return pid_; }

    // Stops depotd (SIGTERM) and returns the fsyncs its message store did, from the summary it
    // logs when it stops; nullopt in memory.
    std::optional<std::uint64_t> stop();
    // kill -9: a crash, nothing written at the end.
    void crash();

private:
    pid_t pid_ = -1;
    std::string dir_; // ours: the port file, the log and (unless given) the data dir
    std::string dataDir_;
    std::string url_;
};

} // namespace depot::bench
