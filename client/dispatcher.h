#pragma once
// Runs a connection's handlers one at a time, in the order they were posted, on a thread of its
// own, so handlers may make blocking calls on the connection without starving its I/O.
//
// Lifetime: the Dispatcher may be destroyed from one of its own tasks (a handler that drops the
// last reference to its connection). The thread then finishes that task and exits on its own;
// the queue and its lock live in a block shared with the thread, so nothing it touches is freed.

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace depot::client {

class Dispatcher {
public:
    Dispatcher();
    ~Dispatcher(); // stop()
    Dispatcher(const Dispatcher&) = delete;
    Dispatcher& operator=(const Dispatcher&) = delete;

    // Queues `task`; ignored after stop(). A task that throws is logged to stderr and dropped.
    void post(std::function<void()> task);

    // For a thread that posts many tasks in a row (a transport handing over a read's worth of
    // deliveries): while a Batch for this dispatcher lives on the posting thread, its posts wake
    // the dispatcher thread once, when the Batch ends, instead of once each (a wake-up is a
    // system call and a context switch; a few hundred of them per read cost more than the
    // handlers).
    class Batch {
    public:
        explicit Batch(Dispatcher& dispatcher);
        ~Batch();
        Batch(const Batch&) = delete;
        Batch& operator=(const Batch&) = delete;

    private:
        friend class Dispatcher;
        Dispatcher* dispatcher_;
        Batch* previous_;
        bool posted_ = false;
    };
    bool onDispatcherThread() const;
    // Called on the dispatcher thread whenever it has run everything queued, before it waits
    // (a transport writes there what its handlers left for a batched write: coalesced acks).
    // Not after stop(). Set it before posting anything that needs it.
    void onIdle(std::function<void()> idle);
    // Runs what is queued, then joins the thread. From the dispatcher thread itself it only
    // stops taking work (a handler cannot join its own thread): what is still queued is dropped.
    void stop();

private:
    // Shared by the Dispatcher and its thread: outlives whichever goes first.
    struct Queue {
        std::mutex mutex;
        std::condition_variable wake;
        std::deque<std::function<void()>> tasks;
        bool stopping = false;
        std::function<void()> idle;
    };
    static void run(const std::shared_ptr<Queue>& queue);

    std::shared_ptr<Queue> queue_;
    std::thread thread_;
    std::thread::id threadId_;
};

} // namespace depot::client
