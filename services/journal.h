#pragma once
// An append-only file of records, one per line, fields separated by tabs: how a service keeps
// what it must remember across a restart (tracking's histories, billing's ledger, the mail
// outbox). Opening it replays every complete record; a torn last line (a crash in the middle
// of an append) is cut off. Each record is written with one write() call before the message
// that caused it is acked, so a killed process loses nothing it acknowledged.
//
// Fields may not hold tabs or newlines: they are replaced by spaces. An append that fails is
// rolled back (the file is cut to where it was), so a later append never continues a torn line.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace depot::delivery {

class Journal {
public:
    using Record = std::vector<std::string>;

    // `file` "" keeps nothing (a service without a state dir). `truncate` starts it empty.
    Journal(std::filesystem::path file, const std::function<void(const Record&)>& replay,
            bool truncate = false);
    ~Journal();
    Journal(const Journal&) = delete;
    Journal& operator=(const Journal&) = delete;

    void append(const Record& record);
    const std::filesystem::path& file() const { return file_; }

    // Every complete record of `file`, for readers such as tests and `delivery` summaries.
    static std::vector<Record> read(const std::filesystem::path& file);

    // A whole field as a number; nullopt for anything else ("12price", "", "-1" unsigned).
    // Replays skip records that do not parse rather than fail to start.
    static std::optional<std::uint64_t> unsignedField(const std::string& field);
    static std::optional<std::int64_t> signedField(const std::string& field);

private:
    std::filesystem::path file_;
    int fd_ = -1;
};

} // namespace depot::delivery
