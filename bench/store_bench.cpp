#include "bench/store_bench.h"

#include "bench/report.h"
#include "broker/store/message_store.h"

#include <CLI/CLI.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

namespace depot::bench {

namespace {

using Clock = std::chrono::steady_clock;

struct StoreOptions {
    std::string directory; // "" = a fresh one under /tmp
    std::size_t messages = 20'000;
    std::size_t body = 100;
};

// The floor under any durable write: one small write and an fdatasync, repeated.
double fdatasyncsPerSecond(const std::filesystem::path& directory, std::size_t count) {
    const std::filesystem::path file = directory / "fdatasync.probe";
    const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        throw std::runtime_error("cannot create " + file.string());
    const char byte = 'x';
    const auto start = Clock::now();
    for (std::size_t i = 0; i < count; ++i)
        if (::write(fd, &byte, 1) != 1 || ::fdatasync(fd) != 0)
            break;
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    ::close(fd);
    std::filesystem::remove(file);
    return static_cast<double>(count) / seconds;
}

void runStore(const StoreOptions& options) {
    std::filesystem::path base = options.directory;
    bool temporary = false;
    if (base.empty()) {
        char pattern[] = "/tmp/depot-store-bench-XXXXXX";
        if (::mkdtemp(pattern) == nullptr)
            throw std::runtime_error("mkdtemp failed");
        base = pattern;
        temporary = true;
    }
    const double syncRate = fdatasyncsPerSecond(base, 200);
    MarkdownTable table(
        {"group (messages per fsync)", "messages/s", "fsyncs/s", "vs one fdatasync per message"});
    const std::string body(options.body, 'x');
    for (std::size_t group : {1, 10, 100, 1000}) {
        const std::size_t count =
            group == 1 ? std::min<std::size_t>(options.messages, 500) : options.messages;
        store::MessageStore::Options storeOptions;
        storeOptions.directory = base / ("group-" + std::to_string(group));
        store::Recovered recovered;
        auto store = store::MessageStore::open(storeOptions, recovered);
        const auto start = Clock::now();
        for (std::size_t i = 0; i < count; ++i) {
            store->enqueue("bench", store->addMessage(body));
            if ((i + 1) % group == 0)
                store->sync();
        }
        store->sync();
        const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
        const double rate = static_cast<double>(count) / seconds;
        table.addRow({std::to_string(group), formatSi(rate),
                      formatSi(static_cast<double>(store->stats().syncs) / seconds),
                      formatRatio(rate / syncRate)});
        store.reset();
        std::filesystem::remove_all(storeOptions.directory);
    }
    table.addRow({"baseline: 1-byte write + fdatasync", formatSi(syncRate), formatSi(syncRate),
                  formatRatio(1.0)});
    std::cout << "message store on " << base << ", " << options.body << "-byte messages\n\n";
    table.print(std::cout);
    if (temporary)
        std::filesystem::remove_all(base);
}

} // namespace

void addStoreCommand(CLI::App& app) {
    auto options = std::make_shared<StoreOptions>();
    CLI::App* command = app.add_subcommand(
        "store", "The message store alone: persistent messages written and fsynced in groups "
                 "(group commit), next to the raw fdatasync rate of the same disk.");
    command->add_option("--dir", options->directory, "where (default: a fresh dir in /tmp)");
    command->add_option("--messages", options->messages, "messages per group size")
        ->check(CLI::Range(std::size_t{1}, std::size_t{100'000'000}))
        ->capture_default_str();
    command->add_option("--body", options->body, "body size in bytes")
        ->check(CLI::Range(std::size_t{0}, std::size_t{16} << 20))
        ->capture_default_str();
    command->callback([options] { runStore(*options); });
}

} // namespace depot::bench
