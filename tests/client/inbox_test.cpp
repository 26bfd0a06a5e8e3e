// client/inbox.h: the ids a consumer has handled, in memory or in a file that survives a
// restart of the process, with a torn last line ignored and old ids forgotten past capacity.

#include "tests/support/process.h"

#include "client/inbox.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

using depot::client::Inbox;
using depot::tests::TempDir;

namespace {

std::string readAll(const std::filesystem::path& file) {
    std::ifstream in(file);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

} // namespace

TEST_CASE("inbox: records each id once") {
    Inbox inbox;
    CHECK_FALSE(inbox.contains("a"));
    CHECK(inbox.record("a"));
    CHECK_FALSE(inbox.record("a"));
    CHECK(inbox.contains("a"));
    CHECK(inbox.size() == 1);
}

TEST_CASE("inbox: a file-backed inbox remembers across restarts and ignores a torn tail") {
    TempDir dir;
    const auto file = std::filesystem::path(dir.file("billing.inbox"));
    {
        Inbox inbox(file);
        inbox.record("m1");
        inbox.record("m2");
    }
    { // what a kill -9 in the middle of an append leaves
        std::ofstream out(file, std::ios::app);
        out << "m3-tor";
    }
    Inbox again(file);
    CHECK(again.contains("m1"));
    CHECK(again.contains("m2"));
    CHECK_FALSE(again.contains("m3-tor"));
    CHECK(again.size() == 2);
    CHECK(readAll(file) == "m1\nm2\n"); // the torn tail is gone from the file too
    CHECK(again.record("m3"));
    CHECK(readAll(file) == "m1\nm2\nm3\n");
}

TEST_CASE("inbox: past its capacity it forgets the oldest ids, and the file stays bounded") {
    TempDir dir;
    const auto file = std::filesystem::path(dir.file("small.inbox"));
    {
        Inbox inbox(file, 3);
        for (int i = 0; i < 10; ++i)
            inbox.record("id" + std::to_string(i));
        CHECK(inbox.size() == 3);
        CHECK_FALSE(inbox.contains("id6"));
        CHECK(inbox.contains("id7"));
        CHECK(inbox.contains("id9"));
    }
    const std::string kept = readAll(file);
    CHECK(std::count(kept.begin(), kept.end(), '\n') <= 6);
    Inbox again(file, 3);
    CHECK(again.contains("id9"));
    CHECK_FALSE(again.contains("id6"));
}

TEST_CASE("inbox: an id with a newline is refused, an unwritable file is an error") {
    TempDir dir;
    Inbox inbox(std::filesystem::path(dir.file("x.inbox")));
    CHECK_THROWS_AS(inbox.record("two\nlines"), std::invalid_argument);
    CHECK_THROWS_AS(Inbox(std::filesystem::path(dir.file("no-such-dir/x.inbox"))),
                    std::runtime_error);
}
