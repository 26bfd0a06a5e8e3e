#pragma once
// Runs our programs (depotd, depotctl) from tests: posix_spawn with stdout and stderr captured to
// files, an optional stdin text, a deadline, and a kill on destruction, so a failing test never
// leaves a daemon behind. Loopback only: the programs are started with 127.0.0.1 addresses.

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace depot::tests {

inline std::string readFile(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// A scratch directory for one test, removed afterwards.
class TempDir {
public:
    TempDir() {
        char pattern[] = "/tmp/depot-test-XXXXXX";
        if (::mkdtemp(pattern) == nullptr)
            throw std::runtime_error("mkdtemp failed");
        path_ = pattern;
    }
    ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string file(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

class Process {
public:
    Process(const std::string& program, const std::vector<std::string>& args,
            const std::string& stdinText = "") {
        static int counter = 0;
        const std::string base = dir_.file("p" + std::to_string(++counter));
        outPath_ = base + ".out";
        errPath_ = base + ".err";
        const std::string inPath = base + ".in";
        std::ofstream(inPath) << stdinText;

        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 0, inPath.c_str(), O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&actions, 1, outPath_.c_str(),
                                         O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_addopen(&actions, 2, errPath_.c_str(),
                                         O_WRONLY | O_CREAT | O_TRUNC, 0644);
        std::vector<char*> argv;
        argv.push_back(const_cast<char*>(program.c_str()));
        for (const std::string& a : args)
            argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        const int rc = posix_spawn(&pid_, program.c_str(), &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        if (rc != 0)
            throw std::runtime_error("cannot start " + program);
    }
    ~Process() {
        if (pid_ > 0 && !exited_) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    void signal(int sig) { ::kill(pid_, sig); }
    pid_t pid() const { return pid_; }

    // The exit code (128 + signal if killed), or -1 if still running at the deadline.
    int wait(std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
        if (exited_)
            return status_;
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                exited_ = true;
                status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                return status_;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return -1;
    }

    std::string out() const { return readFile(outPath_); }
    std::string err() const { return readFile(errPath_); }

private:
    TempDir dir_;
    pid_t pid_ = -1;
    bool exited_ = false;
    int status_ = -1;
    std::string outPath_;
    std::string errPath_;
};

// depotd on 127.0.0.1 with a port the kernel picks (read back from --port-file).
class DepotdProcess {
public:
    explicit DepotdProcess(std::vector<std::string> extraArgs = {}) {
        std::vector<std::string> args = {"--listen",        "127.0.0.1:0", "--port-file",
                                         dir_.file("port"), "--log-level", "warn"};
        // Nothing on disk unless the test gives a data dir (the default one is shared).
        if (std::find(extraArgs.begin(), extraArgs.end(), "--data-dir") == extraArgs.end())
            args.push_back("--in-memory");
        args.insert(args.end(), extraArgs.begin(), extraArgs.end());
        process_ = std::make_unique<Process>(std::string(DEPOT_BINARY_DIR) + "/depotd", args);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (std::chrono::steady_clock::now() < deadline) {
            const std::string text = readFile(dir_.file("port"));
            if (!text.empty()) {
                port_ = static_cast<unsigned short>(std::stoi(text));
                return;
            }
            if (process_->wait(std::chrono::milliseconds(1)) >= 0)
                break;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        throw std::runtime_error("depotd did not start: " + process_->err());
    }
    unsigned short port() const { return port_; }
    std::string url() const {
        return "depot://guest:guest@127.0.0.1:" + std::to_string(port_) + "/";
    }
    Process& process() { return *process_; }

private:
    TempDir dir_;
    std::unique_ptr<Process> process_;
    unsigned short port_ = 0;
};

} // namespace depot::tests
