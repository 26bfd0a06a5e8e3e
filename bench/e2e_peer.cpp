#include "bench/e2e_peer.h"

#include "bench/confirm_window.h"
#include "bench/nats_client.h"
#include "client/connection.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

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

// The publisher's report to the bench, once everything is sent. It stays connected until the
// bench says the consumer is done (it closes our stdin): closing now could cut publishes still
// on their way out.
int published(std::int64_t startNanos, std::size_t count, std::size_t nacked) {
    const double seconds = static_cast<double>(nowNanos() - startNanos) / 1e9;
    std::cout << "started " << startNanos << "\n"
              << "published " << count << " nacked " << nacked << " in " << seconds << std::endl;
    char sink[64];
    while (::read(STDIN_FILENO, sink, sizeof sink) > 0) {
    }
    return 0;
}

// Over nats:// (the nats-server baseline): one connection subscribes to each --queue as a
// subject, as often as it is named (fanout: every subscription gets every message).
int natsConsume(const PeerOptions& o) {
    NatsClient nats(o.url);
    for (std::size_t i = 0; i < o.queues.size(); ++i)
        nats.subscribe(o.queues[i], static_cast<int>(i + 1));
    nats.ping(); // subscribed
    std::cout << "ready" << std::endl;
    std::size_t received = 0;
    std::int64_t lastNanos = 0;
    const bool finished = nats.receive(
        [&](const NatsClient::Message&) {
            if (++received == o.count)
                lastNanos = nowNanos();
        },
        [&] { return received >= o.count; }, std::chrono::seconds(30));
    std::cout << "received " << received << " " << lastNanos << std::endl;
    return finished ? 0 : 1;
}

// Over nats://: message i goes to the subject keys[(i * 7919) % size], from one connection.
int natsPublish(const PeerOptions& o) {
    if (o.connections != 1 || o.persistent)
        throw std::runtime_error("nats: one connection, no persistence");
    const std::string body(o.body, 'x');
    NatsClient nats(o.url);
    const std::int64_t startNanos = nowNanos();
    for (std::size_t i = 0; i < o.count; ++i)
        nats.publish(o.keys[(i * 7919) % o.keys.size()], "", body);
    nats.ping(); // written, and taken in by the server
    return published(startNanos, o.count, 0);
}

int consume(const PeerOptions& o) {
    if (isNatsUrl(o.url))
        return natsConsume(o);
    std::mutex mutex;
    std::condition_variable done;
    std::size_t received = 0;
    std::int64_t lastNanos = 0;
    std::vector<std::shared_ptr<client::Connection>> connections;
    std::vector<client::Consumer> consumers;
    client::ConsumeOptions options;
    options.noAck = !o.acks;
    options.prefetch = static_cast<std::uint32_t>(o.prefetch);
    options.inlineHandler = true; // counting (and acking) never blocks
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
    if (isNatsUrl(o.url))
        return natsPublish(o);
    const std::string body(o.body, 'x');
    std::vector<std::shared_ptr<client::Connection>> connections;
    for (std::size_t c = 0; c < o.connections; ++c)
        connections.push_back(client::Connection::open(o.url));
    const std::size_t each = o.count / o.connections;
    std::size_t nacked = 0;
    std::mutex mutex;
    const std::int64_t startNanos = nowNanos();
    std::string failure;
    std::vector<std::thread> threads;
    for (std::size_t c = 0; c < o.connections; ++c)
        threads.emplace_back([&, c] {
            try {
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
            } catch (const std::exception& e) {
                std::lock_guard lock(mutex);
                failure = e.what();
            }
        });
    for (std::thread& t : threads)
        t.join();
    if (!failure.empty())
        throw std::runtime_error(failure);
    return published(startNanos, each * o.connections, nacked);
}

// A peer's work, its failures turned into a message on stderr and exit code 1 (the bench then
// reports the scenario incomplete).
template <typename Work> int guarded(const char* role, Work&& work) {
    try {
        return work();
    } catch (const std::exception& e) {
        std::cerr << "depot-bench e2e-peer " << role << ": " << e.what() << "\n";
        return 1;
    }
}

// A child process with its stdin and stdout on pipes. What it writes is gathered as it comes
// (pump), so that neither side waits for the other; one that is still running when this goes
// is killed.
class Child {
public:
    Child(const std::string& role, const std::vector<std::string>& args) {
        int toChild[2] = {-1, -1}, fromChild[2] = {-1, -1};
        if (::pipe2(toChild, O_CLOEXEC) != 0 || ::pipe2(fromChild, O_CLOEXEC) != 0) {
            closeAll({toChild[0], toChild[1], fromChild[0], fromChild[1]});
            throw std::runtime_error("cannot make a pipe");
        }
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
        const int spawned =
            posix_spawn(&pid_, "/proc/self/exe", &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        closeAll({toChild[0], fromChild[1]});
        if (spawned != 0) { // no destructor runs for a constructor that throws
            closeAll({toChild[1], fromChild[0]});
            throw std::runtime_error("cannot start itself as a " + role);
        }
        in_ = toChild[1];
        out_ = fromChild[0];
    }
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    ~Child() {
        if (pid_ > 0)
            ::kill(pid_, SIGKILL);
        (void)wait();
        closeAll({in_, out_});
    }

    int out() const { return out_; }
    bool ended() const { return ended_; } // its stdout is closed: it exited

    // Reads what is there (after poll said so); notes the end.
    void pump() {
        char buffer[4096];
        const ssize_t n = ::read(out_, buffer, sizeof buffer);
        if (n > 0)
            output_.append(buffer, static_cast<std::size_t>(n));
        else if (n == 0 || errno != EINTR)
            ended_ = true;
    }
    // The first line it wrote that starts with `word`, once complete.
    std::optional<std::string> line(const std::string& word) const {
        for (std::size_t at = 0; at < output_.size();) {
            const std::size_t end = output_.find('\n', at);
            if (end == std::string::npos)
                return std::nullopt;
            if (output_.compare(at, word.size(), word) == 0)
                return output_.substr(at, end - at);
            at = end + 1;
        }
        return std::nullopt;
    }
    void closeInput() { closeAll({std::exchange(in_, -1)}); }
    // Its exit code (128 and more: killed), once it has exited.
    int wait() {
        if (pid_ <= 0)
            return exit_;
        int status = 0;
        rusage usage{};
        while (::wait4(pid_, &status, 0, &usage) < 0 && errno == EINTR) {
        }
        cpuSeconds_ = seconds(usage.ru_utime) + seconds(usage.ru_stime);
        pid_ = -1;
        exit_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return exit_;
    }
    void kill() {
        if (pid_ > 0)
            ::kill(pid_, SIGKILL);
    }
    // The CPU time (user and system) the process used, known once wait() reaped it.
    double cpuSeconds() const { return cpuSeconds_; }

private:
    static double seconds(timeval t) {
        return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
    }
    static void closeAll(std::initializer_list<int> fds) {
        for (int fd : fds)
            if (fd >= 0)
                ::close(fd);
    }

    pid_t pid_ = -1;
    int in_ = -1;
    int out_ = -1;
    bool ended_ = false;
    int exit_ = 128;
    double cpuSeconds_ = 0;
    std::string output_;
};

// Pumps the children's output until `done` holds, one of `mustRun` ends, or the deadline.
template <typename Done>
bool pumpUntil(std::initializer_list<Child*> children, std::initializer_list<Child*> mustRun,
               Clock::time_point deadline, Done&& done) {
    while (!done()) {
        for (Child* c : mustRun)
            if (c->ended())
                return false;
        std::vector<pollfd> fds;
        std::vector<Child*> polled;
        for (Child* c : children)
            if (!c->ended()) {
                fds.push_back(pollfd{c->out(), POLLIN, 0});
                polled.push_back(c);
            }
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (fds.empty() || left.count() <= 0)
            return false;
        if (::poll(fds.data(), fds.size(), static_cast<int>(left.count())) < 0 && errno != EINTR)
            return false;
        for (std::size_t i = 0; i < fds.size(); ++i)
            if (fds[i].revents != 0)
                polled[i]->pump();
    }
    return true;
}

} // namespace

PeerOutcome runPeers(const std::vector<std::string>& consumerArgs,
                     const std::vector<std::string>& publisherArgs) {
    PeerOutcome outcome;
    try {
        Child consumer("consume", consumerArgs);
        if (!pumpUntil({&consumer}, {&consumer}, Clock::now() + std::chrono::seconds(30),
                       [&] { return consumer.line("ready").has_value(); }))
            return outcome;
        Child publisher("publish", publisherArgs);
        // The consumer waits 120 s at most for its messages; a publisher that fails (its
        // output ends before the consumer is done) ends the scenario at once.
        (void)pumpUntil({&consumer, &publisher}, {&publisher},
                        Clock::now() + std::chrono::seconds(150),
                        [&] { return consumer.line("received").has_value(); });
        publisher.closeInput(); // its cue to close its connections and exit
        (void)pumpUntil({&consumer, &publisher}, {}, Clock::now() + std::chrono::seconds(10),
                        [&] { return consumer.ended() && publisher.ended(); });
        consumer.kill(); // no-ops unless they hang
        publisher.kill();
        const int consumerExit = consumer.wait();
        const int publisherExit = publisher.wait();
        outcome.consumerCpuSeconds = consumer.cpuSeconds();
        outcome.publisherCpuSeconds = publisher.cpuSeconds();

        std::string word;
        std::int64_t lastNanos = 0, startNanos = 0;
        std::istringstream(consumer.line("received").value_or("")) >> word >> outcome.received >>
            lastNanos; // "received N LAST_NANOS"
        std::istringstream(publisher.line("started").value_or("")) >> word >> startNanos;
        std::size_t published = 0;
        std::istringstream(publisher.line("published").value_or("")) >> word >> published >> word >>
            outcome.nacked >> word >> outcome.publishSeconds; // "published N nacked M in S"
        if (startNanos > 0 && lastNanos > startNanos)
            outcome.seconds = static_cast<double>(lastNanos - startNanos) / 1e9;
        outcome.completed = consumerExit == 0 && publisherExit == 0 && outcome.seconds > 0;
    } catch (const std::exception& e) {
        std::cerr << "depot-bench: " << e.what() << "\n";
    }
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
    consumer->callback(
        [options] { std::exit(guarded("consume", [&] { return consume(*options); })); });
    CLI::App* publisher = peer->add_subcommand("publish");
    common(publisher);
    publisher->add_option("--exchange", options->exchange);
    publisher->add_option("--key", options->keys)->required();
    publisher->add_option("--body", options->body);
    publisher->add_flag("--persistent", options->persistent);
    publisher->add_option("--in-flight", options->inFlight);
    publisher->callback(
        [options] { std::exit(guarded("publish", [&] { return publish(*options); })); });
    peer->require_subcommand(1);
}

} // namespace depot::bench
