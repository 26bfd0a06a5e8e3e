#include "services/outbox.h"

#include "services/journal.h"

#include <map>
#include <set>

namespace depot::delivery {

std::vector<Email> readOutbox(const std::filesystem::path& file) {
    std::vector<Email> emails;
    for (const Journal::Record& r : Journal::read(file)) {
        const auto sequence = r.size() >= 8 ? Journal::unsignedField(r[0]) : std::nullopt;
        const auto micros = r.size() >= 8 ? Journal::signedField(r[1]) : std::nullopt;
        if (!sequence || !micros)
            continue; // not an email line
        emails.push_back(Email{*sequence, *micros, r[2], r[3], r[4], r[5], r[6], r[7]});
    }
    return emails;
}

std::vector<std::string> outboxProblems(const std::vector<Email>& emails) {
    // Each kind's place in a package's life; mail must not go backwards.
    static const std::map<std::string, int> STAGE{
        {"order-placed", 0}, {"attempt-failed", 1}, {"delivered", 2},
        {"returned", 2},     {"invoice", 3},
    };
    std::vector<std::string> problems;
    std::set<std::string> causes;
    std::map<std::string, int> stageOf; // per tracking id
    std::uint64_t previous = 0;
    for (const Email& email : emails) {
        if (email.sequence <= previous)
            problems.push_back("email " + std::to_string(email.sequence) + " out of sequence");
        previous = email.sequence;
        if (!causes.insert(email.causeId).second)
            problems.push_back("event " + email.causeId + " mailed twice (" + email.kind + ")");
        auto stage = STAGE.find(email.kind);
        if (stage == STAGE.end() || email.trackingId.empty())
            continue;
        auto [it, first] = stageOf.emplace(email.trackingId, stage->second);
        if (first && stage->second != 0)
            problems.push_back(email.trackingId + ": " + email.kind + " before order-placed");
        if (!first) {
            if (stage->second < it->second || (stage->second == it->second && stage->second != 1))
                problems.push_back(email.trackingId + ": " + email.kind + " out of order");
            it->second = stage->second;
        }
    }
    return problems;
}

} // namespace depot::delivery
