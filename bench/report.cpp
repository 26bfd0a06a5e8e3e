#include "bench/report.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ostream>

namespace depot::bench {

namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

} // namespace

Rate measureRate(double seconds, const BatchFunction& batch, int slices) {
    constexpr double TARGET_BATCH_SECONDS = 200e-6;
    constexpr std::size_t MAX_BATCH = std::size_t{1} << 24;

    std::size_t batchSize = 1;
    for (;;) {
        const Clock::time_point start = Clock::now();
        (void)batch(batchSize);
        if (secondsSince(start) >= TARGET_BATCH_SECONDS || batchSize >= MAX_BATCH)
            break;
        batchSize *= 2;
    }

    Rate rate;
    rate.batchSize = batchSize;
    slices = std::max(slices, 1);
    const double sliceSeconds = seconds / slices;
    std::vector<double> sliceRates;
    for (int slice = 0; slice < slices; ++slice) {
        Work work;
        const Clock::time_point start = Clock::now();
        double elapsed = 0;
        do {
            const Work done = batch(batchSize);
            work.operations += done.operations;
            work.items += done.items;
            elapsed = secondsSince(start);
        } while (elapsed < sliceSeconds);
        sliceRates.push_back(static_cast<double>(work.operations) / elapsed);
        rate.operations += work.operations;
        rate.items += work.items;
        rate.seconds += elapsed;
    }
    std::sort(sliceRates.begin(), sliceRates.end());
    rate.measured = true;
    rate.operationsPerSecond = sliceRates[sliceRates.size() / 2];
    rate.minOperationsPerSecond = sliceRates.front();
    rate.maxOperationsPerSecond = sliceRates.back();
    const double itemsPerOperation =
        rate.operations == 0
            ? 0
            : static_cast<double>(rate.items) / static_cast<double>(rate.operations);
    rate.itemsPerSecond = rate.operationsPerSecond * itemsPerOperation;
    return rate;
}

std::string formatSi(double value) {
    static constexpr const char* SUFFIXES[] = {"", " k", " M", " G", " T"};
    std::size_t suffix = 0;
    while (std::fabs(value) >= 999.5 && suffix + 1 < std::size(SUFFIXES)) {
        value /= 1000;
        ++suffix;
    }
    char text[32];
    const double magnitude = std::fabs(value);
    const int decimals = magnitude >= 99.95 ? 0 : magnitude >= 9.995 ? 1 : 2;
    std::snprintf(text, sizeof text, "%.*f%s", decimals, value, SUFFIXES[suffix]);
    return text;
}

std::string formatRatio(double ratio) {
    if (!std::isfinite(ratio))
        return "-";
    char text[32];
    std::snprintf(text, sizeof text, ratio >= 9.995 ? "%.1fx" : "%.2fx", ratio);
    return text;
}

std::string formatNanos(double nanos) {
    char text[32];
    std::snprintf(text, sizeof text, nanos >= 99.95 ? "%.0f ns" : "%.1f ns", nanos);
    return text;
}

std::string formatBytes(double bytes) {
    if (!std::isfinite(bytes))
        return "n/a";
    return formatSi(bytes) + (bytes >= 999.5 ? "B" : " B");
}

MarkdownTable::MarkdownTable(std::vector<std::string> header) : header_(std::move(header)) {}

void MarkdownTable::addRow(std::vector<std::string> cells) {
    cells.resize(header_.size());
    rows_.push_back(std::move(cells));
}

void MarkdownTable::print(std::ostream& out) const {
    std::vector<std::size_t> widths;
    for (const std::string& title : header_)
        widths.push_back(std::max<std::size_t>(title.size(), 3));
    for (const auto& row : rows_)
        for (std::size_t i = 0; i < row.size(); ++i)
            widths[i] = std::max(widths[i], row[i].size());

    auto printRow = [&out, &widths](const std::vector<std::string>& cells) {
        out << '|';
        for (std::size_t i = 0; i < cells.size(); ++i)
            out << ' ' << cells[i] << std::string(widths[i] - cells[i].size(), ' ') << " |";
        out << '\n';
    };
    printRow(header_);
    out << '|';
    for (std::size_t width : widths)
        out << std::string(width + 2, '-') << '|';
    out << '\n';
    for (const auto& row : rows_)
        printRow(row);
}

std::string jsonString(std::string_view text) {
    std::string quoted = "\"";
    for (const char c : text) {
        switch (c) {
        case '"':
            quoted += "\\\"";
            break;
        case '\\':
            quoted += "\\\\";
            break;
        case '\n':
            quoted += "\\n";
            break;
        default:
            if (static_cast<unsigned char>(c) < 0x20) {
                char escaped[8];
                std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(c));
                quoted += escaped;
            } else {
                quoted += c;
            }
        }
    }
    quoted += '"';
    return quoted;
}

std::string jsonNumber(double value) {
    if (!std::isfinite(value))
        return "null";
    char text[32];
    std::snprintf(text, sizeof text, "%.6g", value);
    return text;
}

} // namespace depot::bench
