// The Dispatcher: one thread, tasks in order, stop() drains and joins, and a task may destroy
// the Dispatcher that runs it (a handler dropping the last reference to its connection).

#include "tests/client/client_helpers.h"

#include "client/dispatcher.h"

#include <doctest/doctest.h>

#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

using depot::client::Dispatcher;
using depot::tests::Inbox;

TEST_CASE("tasks run in order on the dispatcher's own thread") {
    Inbox<int> done;
    std::vector<std::thread::id> threads(20);
    Dispatcher dispatcher;
    CHECK_FALSE(dispatcher.onDispatcherThread());
    for (int i = 0; i < 20; ++i)
        dispatcher.post([&done, &threads, &dispatcher, i] {
            threads[i] = std::this_thread::get_id();
            CHECK(dispatcher.onDispatcherThread());
            done.push(i);
        });
    REQUIRE(done.waitFor(20));
    std::vector<int> expected;
    for (int i = 0; i < 20; ++i)
        expected.push_back(i);
    CHECK(done.items() == expected);
    for (const std::thread::id& id : threads) {
        CHECK(id == threads[0]);
        CHECK(id != std::this_thread::get_id());
    }
}

TEST_CASE("stop() runs what is queued, then ignores new tasks") {
    Inbox<int> done;
    Dispatcher dispatcher;
    std::promise<void> release;
    std::shared_future<void> released = release.get_future().share();
    dispatcher.post([released] { released.wait(); });
    for (int i = 0; i < 5; ++i)
        dispatcher.post([&done, i] { done.push(i); });
    std::thread stopper([&dispatcher] { dispatcher.stop(); });
    release.set_value();
    stopper.join();
    CHECK(done.size() == 5);
    dispatcher.post([&done] { done.push(99); });
    dispatcher.stop();
    CHECK(done.size() == 5);
}

TEST_CASE("onIdle runs when everything queued has run, not between tasks, and not after stop()") {
    Inbox<int> done;
    std::mutex mutex;
    std::vector<std::size_t> seenAtIdle; // how many tasks had run each time the hook ran
    Dispatcher dispatcher;
    dispatcher.onIdle([&] {
        CHECK(dispatcher.onDispatcherThread());
        std::lock_guard lock(mutex);
        seenAtIdle.push_back(done.size());
    });
    std::promise<void> release;
    std::shared_future<void> released = release.get_future().share();
    dispatcher.post([released] { released.wait(); });
    for (int i = 0; i < 5; ++i)
        dispatcher.post([&done, i] { done.push(i); });
    release.set_value();
    REQUIRE(done.waitFor(5));
    for (int tries = 0; tries < 500; ++tries) { // the hook runs just after the last task
        {
            std::lock_guard lock(mutex);
            if (!seenAtIdle.empty() && seenAtIdle.back() == 5)
                break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    dispatcher.stop();
    std::lock_guard lock(mutex);
    REQUIRE_FALSE(seenAtIdle.empty());
    CHECK(seenAtIdle.back() == 5);
    for (const std::size_t seen : seenAtIdle)
        CHECK((seen == 0 || seen == 5)); // 0: idle before the first post
}

TEST_CASE("a task that throws is dropped: the next ones run") {
    Inbox<int> done;
    Dispatcher dispatcher;
    dispatcher.post([] { throw std::runtime_error("expected by the test"); });
    dispatcher.post([&done] { done.push(1); });
    CHECK(done.waitFor(1));
}

TEST_CASE("a task may destroy its own Dispatcher") {
    Inbox<int> done;
    std::promise<void> bothPosted;
    std::shared_future<void> posted = bothPosted.get_future().share();
    auto dispatcher = std::make_unique<Dispatcher>();
    dispatcher->post([&done, &dispatcher, posted] {
        posted.wait();
        dispatcher.reset(); // the thread cannot join itself: it finishes this task and exits
        done.push(1);
    });
    dispatcher->post([&done] { done.push(2); }); // dropped: its dispatcher is gone
    bothPosted.set_value();
    REQUIRE(done.waitFor(1));
    CHECK(done.at(0) == 1);
    CHECK(dispatcher == nullptr);
}
