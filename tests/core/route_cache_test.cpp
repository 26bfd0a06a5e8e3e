// The route cache in front of the direct and topic indexes: bounded, exact, and forgetful.

#include "broker/core/route_cache.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace depot::core;

namespace {

// Distinct fake destinations: the cache only stores and compares their bits.
std::vector<Destination> fakeDestinations(std::size_t count) {
    std::vector<Destination> out;
    for (std::size_t i = 0; i < count; ++i)
        out.push_back(Destination::toQueue(reinterpret_cast<Queue*>((i + 1) * 64)));
    return out;
}

std::vector<Destination> lookup(const RouteCache& cache, const std::string& key) {
    std::vector<Destination> out;
    CHECK(cache.lookup(key, hashKey(key), out));
    return out;
}

bool cached(const RouteCache& cache, const std::string& key) {
    std::vector<Destination> out;
    return cache.lookup(key, hashKey(key), out);
}

} // namespace

TEST_CASE("the route cache returns what was inserted, including empty answers") {
    RouteCache cache;
    const std::vector<Destination> three = fakeDestinations(3);
    cache.insert("a.b", hashKey("a.b"), three.data(), three.size());
    cache.insert("nowhere", hashKey("nowhere"), nullptr, 0);
    CHECK(lookup(cache, "a.b") == three);
    CHECK(lookup(cache, "nowhere").empty());
    CHECK_FALSE(cached(cache, "a.c"));
    CHECK(cache.size() == 2);
}

TEST_CASE("keys with the same hash are told apart by their bytes") {
    RouteCache cache;
    const std::vector<Destination> two = fakeDestinations(2);
    cache.insert("first", 42, two.data(), 1);
    cache.insert("second", 42, two.data() + 1, 1);
    std::vector<Destination> out;
    REQUIRE(cache.lookup("second", 42, out));
    CHECK(out == std::vector<Destination>{two[1]});
    out.clear();
    REQUIRE(cache.lookup("first", 42, out));
    CHECK(out == std::vector<Destination>{two[0]});
    CHECK_FALSE(cache.lookup("third", 42, out));
}

TEST_CASE("the route cache appends to what the caller already collected") {
    RouteCache cache;
    const std::vector<Destination> two = fakeDestinations(2);
    cache.insert("k", hashKey("k"), two.data() + 1, 1);
    std::vector<Destination> out{two[0]};
    REQUIRE(cache.lookup("k", hashKey("k"), out));
    CHECK(out == two);
}

TEST_CASE("clear forgets every key, and the cache fills again afterwards") {
    RouteCache cache;
    const std::vector<Destination> one = fakeDestinations(1);
    for (int i = 0; i < 100; ++i) {
        const std::string key = "k" + std::to_string(i);
        cache.insert(key, hashKey(key), one.data(), 1);
    }
    cache.clear();
    CHECK(cache.size() == 0);
    CHECK_FALSE(cached(cache, "k7"));
    cache.insert("k7", hashKey("k7"), one.data(), 1);
    CHECK(lookup(cache, "k7") == one);
    CHECK_FALSE(cached(cache, "k8"));
}

TEST_CASE("the route cache never holds more than MAX_KEYS keys") {
    RouteCache cache;
    const std::vector<Destination> one = fakeDestinations(1);
    for (std::size_t i = 0; i < 3 * RouteCache::MAX_KEYS + 5; ++i) {
        const std::string key = "order." + std::to_string(i);
        cache.insert(key, hashKey(key), one.data(), 1);
        REQUIRE(cache.size() <= RouteCache::MAX_KEYS);
        // The newest key is always there: a full cache starts over rather than refusing.
        REQUIRE(cached(cache, key));
    }
}

TEST_CASE("destinations are bounded too: a huge answer is not cached") {
    RouteCache cache;
    const std::vector<Destination> many = fakeDestinations(RouteCache::MAX_DESTINATIONS + 1);
    cache.insert("everyone", hashKey("everyone"), many.data(), many.size());
    CHECK_FALSE(cached(cache, "everyone"));
    // Answers that together pass the bound make the cache start over.
    const std::size_t half = RouteCache::MAX_DESTINATIONS / 2 + 1;
    cache.insert("a", hashKey("a"), many.data(), half);
    cache.insert("b", hashKey("b"), many.data(), half);
    CHECK_FALSE(cached(cache, "a"));
    CHECK(lookup(cache, "b").size() == half);
}
