#pragma once
// The mail outbox that the notifications service writes: one email per line, in the order it
// sent them. Its format (tab-separated): sequence, time (µs since the epoch), customer, kind,
// tracking id, order id, id of the event that caused it, subject. Kinds: order-placed,
// order-rejected, attempt-failed, returned, delivered, invoice.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace depot::delivery {

struct Email {
    std::uint64_t sequence = 0;
    std::int64_t micros = 0;
    std::string customer;
    std::string kind;
    std::string trackingId;
    std::string orderId;
    std::string causeId;
    std::string subject;
};

std::vector<Email> readOutbox(const std::filesystem::path& file);

// What is wrong with an outbox, one line per problem ("" none): an event mailed twice, or a
// package whose mail came out of its life's order (placed, failed attempts, then delivered and
// invoiced, or returned).
std::vector<std::string> outboxProblems(const std::vector<Email>& emails);

} // namespace depot::delivery
