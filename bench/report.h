#pragma once
// Timing and output shared by depot-bench's subcommands. A figure is a rate measured over a time
// budget split into slices; the median slice is reported, so a burst of load from another
// process on the shared machine moves one slice rather than the figure. Benchmarks may read the
// clock (the core may not). Everything here is single-threaded.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

namespace depot::bench {

// Makes the compiler treat `value` as read, so it cannot drop the work that produced it.
template <class T> inline void doNotOptimize(const T& value) {
    asm volatile("" : : "r,m"(value) : "memory");
}

// What one batch did: `operations` (routes, publishes) and `items` (destinations, deliveries).
struct Work {
    std::uint64_t operations = 0;
    std::uint64_t items = 0;
};

struct Rate {
    bool measured = false;
    double operationsPerSecond = 0; // median slice
    double itemsPerSecond = 0;      // median rate times items per operation over all slices
    double minOperationsPerSecond = 0;
    double maxOperationsPerSecond = 0;
    std::uint64_t operations = 0; // over all timed slices
    std::uint64_t items = 0;
    double seconds = 0; // timed, without the calibration
    std::size_t batchSize = 0;

    double nanosPerOperation() const { return measured ? 1e9 / operationsPerSecond : 0; }
};

// Does `count` operations and says how many it did (and how many items they produced).
using BatchFunction = std::function<Work(std::size_t count)>;

// Grows the batch size until one batch takes about 200 us (so reading the clock costs nothing
// measurable; these calibration batches also warm caches), then runs batches for `seconds` in
// `slices` equal slices.
Rate measureRate(double seconds, const BatchFunction& batch, int slices = 5);

// 3 significant digits with an SI suffix: "45.6 M", "812 k", "97.0".
std::string formatSi(double value);
// "0.93x".
std::string formatRatio(double ratio);
// "12.3 ns".
std::string formatNanos(double nanos);
// "123 B", "1.45 kB"; "n/a" for NaN (not measured).
std::string formatBytes(double bytes);

// A GitHub-flavoured markdown table with padded columns, readable as plain text too.
class MarkdownTable {
public:
    explicit MarkdownTable(std::vector<std::string> header);
    void addRow(std::vector<std::string> cells);
    void print(std::ostream& out) const;

private:
    std::vector<std::string> header_;
    std::vector<std::vector<std::string>> rows_;
};

// A JSON string literal, quotes included.
std::string jsonString(std::string_view text);
// A JSON number; `null` for NaN or infinity, which JSON cannot carry.
std::string jsonNumber(double value);

} // namespace depot::bench
