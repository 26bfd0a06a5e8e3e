#include "client/inbox.h"

#include "broker/store/write_all.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <stdexcept>
#include <unistd.h>

namespace depot::client {

using store::writeAll;

namespace {

std::runtime_error fileError(const std::string& what, const std::filesystem::path& file) {
    return std::runtime_error("inbox " + file.string() + ": " + what + ": " + std::strerror(errno));
}

} // namespace

Inbox::Inbox(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

Inbox::Inbox(std::filesystem::path file, std::size_t capacity)
    : capacity_(capacity == 0 ? 1 : capacity), file_(std::move(file)) {
    {
        std::ifstream in(file_);
        std::string line;
        // A last line without its newline is a torn append: not an id anyone sent.
        while (std::getline(in, line)) {
            if (in.eof())
                break;
            if (!line.empty() && !ids_.count(line))
                remember(std::move(line));
            ++linesInFile_;
        }
    }
    // Rewrite first: it drops a torn tail and what eviction forgot.
    compact();
    if (fd_ < 0)
        throw fileError("cannot open", file_);
}

Inbox::~Inbox() {
    if (fd_ >= 0)
        ::close(fd_);
}

bool Inbox::contains(std::string_view id) const {
    std::lock_guard lock(mutex_);
    return ids_.count(std::string(id)) > 0;
}

bool Inbox::record(std::string_view id) {
    std::lock_guard lock(mutex_);
    std::string key(id);
    if (ids_.count(key))
        return false;
    if (fd_ >= 0) {
        if (key.find('\n') != std::string::npos)
            throw std::invalid_argument("inbox: a message id may not contain a newline");
        const off_t before = ::lseek(fd_, 0, SEEK_CUR);
        if (!writeAll(fd_, key + "\n")) {
            const std::runtime_error error = fileError("cannot append", file_);
            if (before >= 0 && ::ftruncate(fd_, before) == 0) // no torn line for the next one
                (void)::lseek(fd_, before, SEEK_SET);
            throw error;
        }
        if (++linesInFile_ > 2 * capacity_)
            compact();
    }
    remember(std::move(key));
    return true;
}

std::size_t Inbox::size() const {
    std::lock_guard lock(mutex_);
    return ids_.size();
}

void Inbox::remember(std::string id) {
    ids_.insert(id);
    order_.push_back(std::move(id));
    while (order_.size() > capacity_) {
        ids_.erase(order_.front());
        order_.pop_front();
    }
}

// Writes the remembered ids to a new file and renames it over the old one (atomic on POSIX),
// then appends to the new one.
void Inbox::compact() {
    const std::filesystem::path next = file_.string() + ".new";
    const int fd = ::open(next.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        throw fileError("cannot create", next);
    std::string all;
    for (const std::string& id : order_)
        all += id + "\n";
    if (!writeAll(fd, all) || ::fsync(fd) != 0) {
        ::close(fd);
        throw fileError("cannot write", next);
    }
    if (::rename(next.c_str(), file_.c_str()) != 0) {
        ::close(fd);
        throw fileError("cannot replace", file_);
    }
    if (fd_ >= 0)
        ::close(fd_);
    fd_ = fd; // positioned at the end: appends follow the compacted ids
    linesInFile_ = order_.size();
}

} // namespace depot::client
