#include "bench/e2e_peer.h"

#include "bench/confirm_window.h"
#include "client/connection.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace depot::bench {

namespace {

using Clock = std::chrono::steady_clock;

std::int64_t nowNanos() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
        .count();
}

struct PeerOptions {
    std::string url;
    std::vector<std::string> queues; // consume: each connection consumes each of them
    std::string exchange;            // publish
    std::vector<std::string> keys;   // publish: message i goes with keys[(i * 7919) % size]
    std::size_t count = 0;           // consume: deliveries expected in all; publish: in all
    std::size_t connections = 1;
    std::size_t body = 100;
    std::size_t prefetch = 0;
    bool acks = false;
    bool persistent = false; // publish: persistent, with confirms, `inFlight` outstanding
    std::size_t inFlight = 1000;
};

int consume(const PeerOptions& o) {
    std::mutex mutex;
    std::condition_variable done;
    std::size_t received = 0;
    std::int64_t lastNanos = 0;
    std::vector<std::shared_ptr<client::Connection>> connections;
    std::vector<client::Consumer> consumers;
    client::ConsumeOptions options;
    options.noAck = !o.acks;
    options.prefetch = static_cast<std::uint32_t>(o.prefetch);
    for (std::size_t c = 0; c < o.connections; ++c) {
        connections.push_back(client::Connection::open(o.url));
        for (const std::string& queue : o.queues)
            consumers.push_back(connections.back()->consume(
                queue,
                [&](client::Delivery& d) {
                    if (o.acks)
                        d.ack();
                    std::lock_guard lock(mutex);
                    if (++received == o.count) {
                        lastNanos = nowNanos();
                        done.notify_all();
                    }
                },
                options));
    }
    std::cout << "ready" << std::endl;
    std::unique_lock lock(mutex);
    const bool finished =
        done.wait_for(lock, std::chrono::seconds(120), [&] { return received >= o.count; });
    std::cout << "received " << received << " " << lastNanos << std::endl;
    lock.unlock();
    for (client::Consumer& consumer : consumers)
        consumer.cancel();
    return finished ? 0 : 1;
}

int publish(const PeerOptions& o) {
    const std::string body(o.body, 'x');
    std::vector<std::shared_ptr<client::Connection>> connections;
    for (std::size_t c = 0; c < o.connections; ++c)
        connections.push_back(client::Connection::open(o.url));
    const std::size_t each = o.count / o.connections;
    std::size_t nacked = 0;
    std::mutex mutex;
    const std::int64_t startNanos = nowNanos();
    std::vector<std::thread> threads;
    for (std::size_t c = 0; c < o.connections; ++c)
        threads.emplace_back([&, c] {
            client::Connection& connection = *connections[c];
            if (o.persistent) {
                const std::size_t n =
                    publishPersistentWindowed(connection, o.keys.at(0), body, each, o.inFlight);
                std::lock_guard lock(mutex);
                nacked += n;
                return;
            }
            for (std::size_t i = 0; i < each; ++i)
                connection.publish(o.exchange, o.keys[(i * 7919) % o.keys.size()], body);
        });
    for (std::thread& t : threads)
        t.join();
    const double publishedSeconds = static_cast<double>(nowNanos() - startNanos) / 1e9;
    std::cout << "started " << startNanos << "\n"
              << "published " << each * o.connections << " nacked " << nacked << " in "
              << publishedSeconds << std::endl;
    // Connected until the bench says the consumer is done (it closes our stdin): closing now
    // could cut publishes still on their way out.
    char sink[64];
    while (::read(STDIN_FILENO, sink, sizeof sink) > 0) {
    }
    return 0;
}

// A child process with its stdin and stdout on pipes.
struct Child {
    pid_t pid = -1;
    int in = -1;  // its stdin (we write, or close to say "stop")
    int out = -1; // its stdout (we read)

    std::string readLine() {
        std::string line;
        char c = 0;
        while (::read(out, &c, 1) == 1 && c != '\n')
            line += c;
        return line;
    }
    std::string readAll() {
        std::string all;
        char buffer[4096];
        ssize_t n = 0;
        while ((n = ::read(out, buffer, sizeof buffer)) > 0)
            all.append(buffer, static_cast<std::size_t>(n));
        return all;
    }
    void closeInput() {
        if (in >= 0)
            ::close(in);
        in = -1;
    }
    // Its exit code; call after reading what it wrote.
    int wait() {
        closeInput();
        int status = 0;
        ::waitpid(pid, &status, 0);
        ::close(out);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    }
};

Child spawnPeer(const std::string& role, const std::vector<std::string>& args) {
    int toChild[2], fromChild[2];
    if (::pipe2(toChild, O_CLOEXEC) != 0 || ::pipe2(fromChild, O_CLOEXEC) != 0)
        throw std::runtime_error("depot-bench: cannot make a pipe");
    std::vector<std::string> all = {"depot-bench", "e2e-peer", role};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : all)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, toChild[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, fromChild[1], STDOUT_FILENO);
    Child child;
    const int spawned =
        posix_spawn(&child.pid, "/proc/self/exe", &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(toChild[0]);
    ::close(fromChild[1]);
    if (spawned != 0)
        throw std::runtime_error("depot-bench: cannot start itself as a " + role);
    child.in = toChild[1];
    child.out = fromChild[0];
    return child;
}

} // namespace

PeerOutcome runPeers(const std::vector<std::string>& consumerArgs,
                     const std::vector<std::string>& publisherArgs) {
    PeerOutcome outcome;
    Child consumer = spawnPeer("consume", consumerArgs);
    if (consumer.readLine() != "ready") {
        consumer.wait();
        throw std::runtime_error("depot-bench: the consumer process did not start");
    }
    Child publisher = spawnPeer("publish", publisherArgs);
    std::istringstream received(consumer.readLine()); // "received N LAST_NANOS"
    std::string word;
    std::int64_t lastNanos = 0;
    received >> word >> outcome.received >> lastNanos;
    const int consumerExit = consumer.wait();
    publisher.closeInput();                         // lets it go
    std::istringstream report(publisher.readAll()); // "started NANOS\npublished N nacked M in S"
    const int publisherExit = publisher.wait();
    std::int64_t startNanos = 0;
    std::size_t published = 0;
    report >> word >> startNanos >> word >> published >> word >> outcome.nacked >> word >>
        outcome.publishSeconds;
    outcome.seconds = lastNanos > startNanos && startNanos > 0
                          ? static_cast<double>(lastNanos - startNanos) / 1e9
                          : 0;
    outcome.completed = consumerExit == 0 && publisherExit == 0;
    return outcome;
}

void addPeerCommand(CLI::App& app) {
    auto options = std::make_shared<PeerOptions>();
    CLI::App* peer = app.add_subcommand("e2e-peer", "e2e's publisher or consumer process");
    peer->group(""); // not listed in --help: e2e starts it
    auto common = [&](CLI::App* role) {
        role->add_option("--url", options->url)->required();
        role->add_option("--count", options->count)->required();
        role->add_option("--connections", options->connections);
    };
    CLI::App* consumer = peer->add_subcommand("consume");
    common(consumer);
    consumer->add_option("--queue", options->queues)->required();
    consumer->add_option("--prefetch", options->prefetch);
    consumer->add_flag("--acks", options->acks);
    consumer->callback([options] { std::exit(consume(*options)); });
    CLI::App* publisher = peer->add_subcommand("publish");
    common(publisher);
    publisher->add_option("--exchange", options->exchange);
    publisher->add_option("--key", options->keys)->required();
    publisher->add_option("--body", options->body);
    publisher->add_flag("--persistent", options->persistent);
    publisher->add_option("--in-flight", options->inFlight);
    publisher->callback([options] { std::exit(publish(*options)); });
    peer->require_subcommand(1);
}

} // namespace depot::bench
