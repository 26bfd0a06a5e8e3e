#include "bench/local_nats.h"

#include "bench/spawn_logged.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

namespace depot::bench {

namespace {

std::string findServer() {
    const char* path = std::getenv("PATH");
    std::stringstream dirs(std::string(path != nullptr ? path : "") + ":/usr/sbin:/usr/bin");
    for (std::string dir; std::getline(dirs, dir, ':');)
        if (!dir.empty() && ::access((dir + "/nats-server").c_str(), X_OK) == 0)
            return dir + "/nats-server";
    throw std::runtime_error("nats-server is not installed (Debian: apt-get install nats-server)");
}

} // namespace

LocalNats::LocalNats() {
    const std::string program = findServer();
    char pattern[] = "/tmp/depot-bench-nats-XXXXXX";
    if (::mkdtemp(pattern) == nullptr)
        throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
    // Port -1: one of its own choosing, written to <dir>/nats-server_<pid>.ports.
    std::vector<std::string> args = {program, "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir",
                                     dir_};
    const std::string log = dir_ + "/nats-server.log";
    try {
        pid_ = spawnLogged(std::move(args), log);
    } catch (...) {
        std::filesystem::remove_all(dir_);
        throw;
    }
    const std::string ports = dir_ + "/nats-server_" + std::to_string(pid_) + ".ports";
    for (int i = 0; i < 2000; ++i) { // 10 s
        std::ifstream in(ports);
        const std::string text((std::istreambuf_iterator<char>(in)), {});
        const std::size_t at = text.find("nats://");
        const std::size_t end = text.find('"', at);
        if (at != std::string::npos && end != std::string::npos) {
            url_ = text.substr(at, end - at);
            return;
        }
        if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
            pid_ = -1;
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (pid_ > 0) { // no destructor runs for a constructor that throws; the log stays
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
    throw std::runtime_error("nats-server did not start (see " + log + ")");
}

LocalNats::~LocalNats() {
    if (pid_ > 0) {
        ::kill(pid_, SIGTERM);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }
    if (!dir_.empty())
        std::filesystem::remove_all(dir_);
}

} // namespace depot::bench
