#include "bench/local_depotd.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>
#include <vector>

extern char** environ;

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
    std::vector<char*> argv;
    for (std::string& a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    const std::string log = dir_ + "/depotd.log";
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    const int spawned =
        posix_spawn(&pid_, program.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (spawned != 0)
        throw std::runtime_error("cannot start " + program);
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
