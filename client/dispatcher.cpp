#include "client/dispatcher.h"

#include <cstdio>
#include <exception>
#include <utility>

namespace depot::client {

namespace {
thread_local Dispatcher::Batch* currentBatch = nullptr;
} // namespace

Dispatcher::Batch::Batch(Dispatcher& dispatcher)
    : dispatcher_(&dispatcher), previous_(currentBatch) {
    currentBatch = this;
}

Dispatcher::Batch::~Batch() {
    currentBatch = previous_;
    if (posted_)
        dispatcher_->queue_->wake.notify_one();
}

Dispatcher::Dispatcher() : queue_(std::make_shared<Queue>()) {
    thread_ = std::thread([queue = queue_] { run(queue); });
    threadId_ = thread_.get_id();
}

Dispatcher::~Dispatcher() {
    stop();
    // Destroyed by one of its own tasks: the thread cannot be joined from itself. It holds its
    // own reference to the queue and exits once that task returns.
    if (thread_.joinable())
        thread_.detach();
}

void Dispatcher::post(std::function<void()> task) {
    {
        std::lock_guard lock(queue_->mutex);
        if (queue_->stopping)
            return;
        queue_->tasks.push_back(std::move(task));
    }
    for (Batch* batch = currentBatch; batch != nullptr; batch = batch->previous_) {
        if (batch->dispatcher_ == this) {
            batch->posted_ = true; // woken when the batch ends
            return;
        }
    }
    queue_->wake.notify_one();
}

void Dispatcher::onIdle(std::function<void()> idle) {
    std::lock_guard lock(queue_->mutex);
    queue_->idle = std::move(idle);
}

bool Dispatcher::onDispatcherThread() const {
    return std::this_thread::get_id() == threadId_;
}

void Dispatcher::stop() {
    const bool fromTask = onDispatcherThread();
    std::deque<std::function<void()>> dropped; // destroyed last, outside the lock
    {
        std::lock_guard lock(queue_->mutex);
        queue_->stopping = true;
        if (fromTask)
            dropped.swap(queue_->tasks); // run() returns after the task in progress
    }
    queue_->wake.notify_one();
    if (!fromTask && thread_.joinable())
        thread_.join();
}

void Dispatcher::run(const std::shared_ptr<Queue>& queue) {
    std::unique_lock lock(queue->mutex);
    for (;;) {
        if (queue->tasks.empty() && !queue->stopping && queue->idle) {
            const std::function<void()>& idle = queue->idle; // set once, before any task
            lock.unlock();
            idle();
            lock.lock();
        }
        queue->wake.wait(lock, [&] { return queue->stopping || !queue->tasks.empty(); });
        if (queue->tasks.empty())
            return; // stopping, and everything queued before stop() has run
        std::function<void()> task = std::move(queue->tasks.front());
        queue->tasks.pop_front();
        lock.unlock();
        try {
            task();
        } catch (const std::exception& e) {
            std::fprintf(stderr, "depot client: a handler threw: %s\n", e.what());
        } catch (...) {
            std::fprintf(stderr, "depot client: a handler threw a non-standard exception\n");
        }
        // The task's captures (a user handler, a Delivery) are released outside the lock.
        task = nullptr;
        lock.lock();
    }
}

} // namespace depot::client
