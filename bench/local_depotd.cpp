#include "bench/local_depotd.h"

#include "bench/spawn_logged.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>
#include <vector>

namespace depot::bench {

LocalDepotd::LocalDepotd(bool onDisk, std::string dataDir) {
    const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe");
    const std::string program = (self.parent_path() / "depotd").string();
    char pattern[] = "/tmp/depot-bench-XXXXXX";
    if (::mkdtemp(pattern) == nullptr)
        throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
    const std::string portFile = dir_ + "/port";
    // On disk, its log says how many fsyncs it did (read by stop()).
    std::vector<std::string> args = {program,
                                     "--listen",
                                     "127.0.0.1:0",
                                     "--port-file",
                                     portFile,
                                     "--log-level",
                                     onDisk ? "info" : "warn",
                                     "--status-interval",
                                     "0"};
    if (onDisk) {
        dataDir_ = dataDir.empty() ? dir_ + "/data" : dataDir;
        args.push_back("--data-dir");
        args.push_back(dataDir_);
    } else {
        args.push_back("--in-memory");
    }
    const std::string log = dir_ + "/depotd.log";
    pid_ = spawnLogged(std::move(args), log);
    // Generous: a restart recovers its whole backlog before it listens.
    for (int i = 0; i < 24000; ++i) {
        std::ifstream in(portFile);
        unsigned port = 0;
        if (in >> port) {
            url_ = "depot://guest:guest@127.0.0.1:" + std::to_string(port) + "/";
            return;
        }
        if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
            pid_ = -1;
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    throw std::runtime_error("depotd did not start (see " + log + ")");
}

LocalDepotd::~LocalDepotd() {
    stop();
    std::filesystem::remove_all(dir_);
}

std::optional<std::uint64_t> LocalDepotd::stop() {
    if (pid_ > 0) {
        ::kill(pid_, SIGTERM);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }
    std::ifstream log(dir_ + "/depotd.log");
    std::optional<std::uint64_t> fsyncs;
    for (std::string line; std::getline(log, line);) {
        const std::size_t at = line.find("message store: ");
        if (at != std::string::npos)
            fsyncs = std::strtoull(line.c_str() + at + 15, nullptr, 10);
    }
    return fsyncs;
}

void LocalDepotd::crash() {
    if (pid_ <= 0)
        return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
}

} // namespace depot::bench
