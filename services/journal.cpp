#include "services/journal.h"

#include "broker/store/write_all.h"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unistd.h>

namespace depot::delivery {

namespace {

std::runtime_error fileError(const std::string& what, const std::filesystem::path& file) {
    return std::runtime_error(what + " " + file.string() + ": " + std::strerror(errno));
}

Journal::Record split(const std::string& line) {
    Journal::Record fields;
    std::string field;
    std::istringstream in(line);
    while (std::getline(in, field, '\t'))
        fields.push_back(field);
    if (!line.empty() && line.back() == '\t')
        fields.emplace_back();
    return fields;
}

} // namespace

std::optional<std::uint64_t> Journal::unsignedField(const std::string& field) {
    std::uint64_t value = 0;
    const auto [end, error] = std::from_chars(field.data(), field.data() + field.size(), value);
    if (error != std::errc() || end != field.data() + field.size() || field.empty())
        return std::nullopt;
    return value;
}

std::optional<std::int64_t> Journal::signedField(const std::string& field) {
    std::int64_t value = 0;
    const auto [end, error] = std::from_chars(field.data(), field.data() + field.size(), value);
    if (error != std::errc() || end != field.data() + field.size() || field.empty())
        return std::nullopt;
    return value;
}

std::vector<Journal::Record> Journal::read(const std::filesystem::path& file) {
    std::vector<Record> records;
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line)) {
        if (in.eof())
            break; // no newline: torn
        records.push_back(split(line));
    }
    return records;
}

Journal::Journal(std::filesystem::path file, const std::function<void(const Record&)>& replay,
                 bool truncate)
    : file_(std::move(file)) {
    if (file_.empty())
        return;
    std::uintmax_t complete = 0; // bytes up to the end of the last complete line
    if (!truncate) {
        std::ifstream in(file_);
        std::string line;
        while (std::getline(in, line)) {
            if (in.eof())
                break;
            complete += line.size() + 1;
            replay(split(line));
        }
    }
    fd_ = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0644);
    if (fd_ < 0)
        throw fileError("cannot open", file_);
    if (!truncate && ::ftruncate(fd_, static_cast<off_t>(complete)) != 0)
        throw fileError("cannot cut the torn tail of", file_);
    if (::lseek(fd_, 0, SEEK_END) < 0)
        throw fileError("cannot seek", file_);
}

Journal::~Journal() {
    if (fd_ >= 0)
        ::close(fd_);
}

void Journal::append(const Record& record) {
    if (fd_ < 0)
        return;
    std::string line;
    for (std::size_t i = 0; i < record.size(); ++i) {
        if (i > 0)
            line += '\t';
        for (char c : record[i])
            line += (c == '\t' || c == '\n') ? ' ' : c;
    }
    line += '\n';
    const off_t before = ::lseek(fd_, 0, SEEK_CUR);
    if (!store::writeAll(fd_, line)) {
        const std::runtime_error error = fileError("cannot append to", file_);
        if (before >= 0 && ::ftruncate(fd_, before) == 0)
            (void)::lseek(fd_, before, SEEK_SET);
        throw error;
    }
}

} // namespace depot::delivery
