// depotd: the Depot broker daemon. One io thread owns the routing core and every connection
// (docs/architecture.md explains why); this file only reads options, wires the pieces and
// handles signals.

#include "broker/net/server.h"
#include "broker/runtime/broker_runtime.h"
#include "broker/runtime/clock.h"

#include <CLI/CLI.hpp>
#include <asio.hpp>
#include <spdlog/spdlog.h>

#include <unistd.h>

#ifdef DEPOT_MIMALLOC
#include <mimalloc.h>
#endif

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>

namespace {

constexpr const char* VERSION = "0.1.0";

struct Options {
    std::string listen = "127.0.0.1:7672";
    std::string logLevel = "info";
    std::uint64_t maxFrame = depot::protocol::DEFAULT_MAX_FRAME_BYTES;
    std::uint32_t heartbeat = 60;
    std::uint32_t handshakeTimeoutMs = 10'000;
    std::uint32_t statusInterval = 60;
    std::string user = "guest";
    std::string password = "guest";
    std::string portFile;
    std::uint64_t memoryLimit = 0;
    std::string dataDir;
    bool inMemory = false;
};

// Where depotd keeps its data when --data-dir is not given: /var/lib/depot for root, else the
// user's state directory (XDG), so that a plain `depotd` is durable, as RabbitMQ is.
std::string defaultDataDir() {
    if (::geteuid() == 0)
        return "/var/lib/depot";
    if (const char* state = std::getenv("XDG_STATE_HOME"); state != nullptr && *state != '\0')
        return std::string(state) + "/depot";
    if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0')
        return std::string(home) + "/.local/state/depot";
    return "depot-data";
}

// Which malloc serves this process, for the start-up log: mimalloc when it is linked and
// malloc() really resolves to it (a preloaded allocator would win over it).
std::string allocatorName() {
#ifdef DEPOT_MIMALLOC
    void* probe = std::malloc(16);
    const bool ours = mi_is_in_heap_region(probe);
    std::free(probe);
    const int v = mi_version();
    if (ours)
        return "mimalloc " + std::to_string(v / 100) + "." + std::to_string(v / 10 % 10) + "." +
               std::to_string(v % 10);
    return "not mimalloc (linked, but malloc resolves elsewhere)";
#else
    return "the C library's malloc";
#endif
}

// "127.0.0.1:7672" or "[::1]:7672"; only literal addresses (depotd does no DNS).
std::optional<asio::ip::tcp::endpoint> parseEndpoint(const std::string& text, std::string& why) {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos) {
        why = "expected HOST:PORT";
        return std::nullopt;
    }
    std::string host = text.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    const std::string portText = text.substr(colon + 1);
    char* end = nullptr;
    const unsigned long port = std::strtoul(portText.c_str(), &end, 10);
    if (portText.empty() || *end != '\0' || port > 65535) {
        why = "bad port '" + portText + "'";
        return std::nullopt;
    }
    asio::error_code error;
    const asio::ip::address address = asio::ip::make_address(host, error);
    if (error) {
        why = "'" + host + "' is not an IP address";
        return std::nullopt;
    }
    return asio::ip::tcp::endpoint(address, static_cast<unsigned short>(port));
}

// ", message store: 12 fsyncs, 3 segments, 40 live messages", or "" without a data dir.
std::string storeSummary(const depot::net::Server& server) {
    const auto stats = server.storeStats();
    if (!stats)
        return "";
    return ", message store: " + std::to_string(stats->syncs) + " fsyncs, " +
           std::to_string(stats->segments) + " segments, " + std::to_string(stats->liveMessages) +
           " live messages";
}

void logStatus(depot::net::Server& server) {
    std::uint64_t queues = 0;
    std::uint64_t ready = 0;
    std::uint64_t unacked = 0;
    for (const auto& info : server.runtime().broker().defaultVhost().listQueues()) {
        ++queues;
        ready += info.ready;
        unacked += info.unacked;
    }
    spdlog::info("status: {} connections, {} queues, {} messages ready, {} unacked{}",
                 server.sessionCount(), queues, ready, unacked, storeSummary(server));
}

} // namespace

int main(int argc, char** argv) {
    Options options;
    CLI::App app{
        "depotd: the Depot message broker daemon. Speaks Depot's native protocol "
        "(docs/protocol.md) on --listen; clients connect with depot://user:pass@host:port."};
    app.set_config("--config", "", "read options from this file (CLI11's INI/TOML format)");
    app.add_option("--listen", options.listen, "address and port to listen on (IP:PORT)")
        ->capture_default_str();
    app.add_option("--log-level", options.logLevel, "trace, debug, info, warn, error or off")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
        ->capture_default_str();
    app.add_option("--max-frame", options.maxFrame,
                   "largest frame accepted, in bytes; a larger one closes its connection")
        ->check(CLI::Range(std::uint64_t{4096}, std::uint64_t{1} << 32))
        ->capture_default_str();
    app.add_option("--heartbeat", options.heartbeat,
                   "heartbeat interval proposed to clients, in seconds (0 = none); a peer "
                   "silent for two intervals is disconnected")
        ->capture_default_str();
    app.add_option("--handshake-timeout", options.handshakeTimeoutMs,
                   "milliseconds a new connection has to say hello")
        ->check(CLI::Range(1u, 600'000u))
        ->capture_default_str();
    app.add_option("--status-interval", options.statusInterval,
                   "seconds between one-line status logs (0 = never)")
        ->capture_default_str();
    app.add_option("--user", options.user, "the username clients must present")
        ->capture_default_str();
    app.add_option("--password", options.password, "the password clients must present")
        ->capture_default_str();
    app.add_option("--memory-limit", options.memoryLimit,
                   "bytes of messages (ready bodies plus socket backlogs) above which publishing "
                   "connections are blocked until they fall below 80 %; 0 = no limit")
        ->capture_default_str();
    auto* dataDir = app.add_option(
        "--data-dir", options.dataDir,
        "keep durable exchanges, queues and bindings, and persistent messages in durable "
        "queues, here: they survive a restart or a crash (confirms wait for the disk). Default: "
        "/var/lib/depot as root, else $XDG_STATE_HOME/depot or ~/.local/state/depot. One "
        "depotd per data dir");
    app.add_flag("--in-memory", options.inMemory,
                 "keep nothing on disk: every queue and message is gone when depotd stops")
        ->excludes(dataDir);
    app.add_option("--port-file", options.portFile,
                   "once listening, write the bound port to this file (useful with port 0)");
    app.set_version_flag("--version", std::string("depotd ") + VERSION);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // CLI11's exit codes are 0 for --help/--version, 105-ish otherwise: use 2 for misuse.
        const int code = app.exit(e);
        return code == 0 ? 0 : 2;
    }

    std::string why;
    const std::optional<asio::ip::tcp::endpoint> endpoint = parseEndpoint(options.listen, why);
    if (!endpoint) {
        std::cerr << "depotd: --listen " << options.listen << ": " << why << "\n";
        return 2;
    }
    spdlog::set_level(spdlog::level::from_str(options.logLevel));
    // A file size limit (ulimit -f) makes a write fail with EFBIG, handled like a full disk
    // (the disk alarm), instead of killing the broker.
    std::signal(SIGXFSZ, SIG_IGN);

    asio::io_context io;
    depot::runtime::SteadyClock clock;
    depot::runtime::BrokerRuntime runtime(io, clock);
    depot::net::ServerConfig config;
    config.serverName = std::string("depotd ") + VERSION;
    config.maxFrameBytes = options.maxFrame;
    config.heartbeatSeconds = options.heartbeat;
    config.handshakeTimeout = std::chrono::milliseconds(options.handshakeTimeoutMs);
    config.username = options.user;
    config.password = options.password;
    config.memoryLimitBytes = options.memoryLimit;
    if (!options.inMemory)
        config.dataDir = options.dataDir.empty() ? defaultDataDir() : options.dataDir;

    std::optional<depot::net::Server> server;
    try {
        server.emplace(runtime, *endpoint, config);
    } catch (const std::filesystem::filesystem_error& e) { // (a system_error too: first)
        std::cerr << "depotd: --data-dir " << config.dataDir.string() << ": " << e.code().message()
                  << "\n";
        return 1;
    } catch (const asio::system_error& e) {
        std::cerr << "depotd: cannot listen on " << options.listen << ": " << e.what() << "\n";
        return 1;
    } catch (const std::exception& e) { // the data dir: unusable, or damaged definitions
        std::cerr << "depotd: " << e.what() << "\n";
        return 1;
    }
    const auto bound = server->endpoint();
    spdlog::info("depotd {} listening on {}:{} (allocator: {})", VERSION,
                 bound.address().to_string(), bound.port(), allocatorName());
    if (!options.portFile.empty()) {
        // Written whole, then renamed: a reader never sees a partial number.
        const std::string tmp = options.portFile + ".tmp";
        std::ofstream(tmp) << bound.port() << "\n";
        std::rename(tmp.c_str(), options.portFile.c_str());
    }

    asio::steady_timer status(io);
    std::function<void()> scheduleStatus = [&] {
        if (options.statusInterval == 0)
            return;
        status.expires_after(std::chrono::seconds(options.statusInterval));
        status.async_wait([&](const asio::error_code& error) {
            if (error)
                return;
            logStatus(*server);
            scheduleStatus();
        });
    };
    scheduleStatus();

    // SIGTERM / SIGINT: tell every client, give them a moment to read it, then exit 0.
    asio::signal_set signals(io, SIGINT, SIGTERM);
    asio::steady_timer drain(io);
    const auto stopAt = std::make_shared<std::chrono::steady_clock::time_point>();
    std::function<void()> waitForDrain = [&] {
        if (server->sessionCount() == 0 || std::chrono::steady_clock::now() >= *stopAt) {
            io.stop();
            return;
        }
        drain.expires_after(std::chrono::milliseconds(20));
        drain.async_wait([&](const asio::error_code&) { waitForDrain(); });
    };
    signals.async_wait([&](const asio::error_code& error, int signal) {
        if (error)
            return;
        spdlog::info("received signal {}: shutting down", signal);
        status.cancel();
        server->stop("broker shutting down");
        *stopAt = std::chrono::steady_clock::now() + std::chrono::seconds(2);
        waitForDrain();
    });

    io.run();
    const std::string summary = storeSummary(*server);
    server.reset();
    spdlog::info("depotd stopped{}", summary);
    return 0;
}
