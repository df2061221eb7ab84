// fuzz/fuzz-lock-blocking.cpp — Lock and RLock with a second thread: the blocking acquire, the hand-off to a
// sleeper, and the death of a holder, in an order the input chooses, each outcome checked against a model.
//
// fuzz-lock.cpp gives arbitrary bytes to the non-blocking calls of one thread; here the bytes are valid and
// a helper thread holds, releases, or ends while holding (so the kernel marks the word FUTEX_OWNER_DIED),
// while this thread calls acquire_status with a timeout: it times out while the helper holds, sleeps and
// is woken when the helper releases, or is handed the lock with owner_died when the helper ends holding it.
// Input: byte 0 bit 0 = Lock or RLock; then pairs [step, argument]:
//   0 helper acquires (when the lock is free; argument bit 0: it repairs an owner-died lock at once)
//   1 helper releases            2 helper ends holding the lock (a new helper thread serves later steps)
//   3 this thread: acquire_status(1 + argument % 3 ms): times out while the helper holds
//   4 this thread sleeps in acquire_status(8 s) while the helper releases after argument % 3 ms
//   5 this thread sleeps in acquire_status(8 s) while the helper ends holding after argument % 3 ms
//   6 this thread releases       7 this thread calls make_consistent()      8 this thread: try_lock()
// Properties: every call's outcome (acquired, owner_died, timed_out, NotRecoverable, StateError) and
// consistency() afterwards are exactly the model's; a sleeper is woken by the release or the death: it
// must have the lock within half its 8 s timeout (a missed wake-up lets it sleep to its deadline, where
// its last attempt finds the lock free). Deterministic whatever the timing: the
// helper's pause only decides whether this thread is already asleep when the lock is freed.
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>

#include "mproc/error.hpp"
#include "mproc/lock.hpp"
#include "mproc/rlock.hpp"

namespace {

using namespace std::chrono_literals;

void require(bool property, const char* what) {
    if (!property) {
        std::fprintf(stderr, "fuzz-lock-blocking: property failed: %s\n", what);
        std::abort();
    }
}

// A thread that runs the closures it is given, one at a time; exit_holding() lets it end (with whatever
// it holds) so that the kernel runs its robust list.
class Helper {
public:
    Helper() : thread_([this] { serve(); }) {}
    ~Helper() {
        post([this] { stop_ = true; });
        thread_.join();
    }
    Helper(const Helper&) = delete;
    Helper& operator=(const Helper&) = delete;

    // Starts `work` on the helper once it finished the previous work; wait() waits for it to finish.
    void post(std::function<void()> work) {
        std::unique_lock guard(mutex_);
        changed_.wait(guard, [this] { return done_ && !work_; });
        work_ = std::move(work);
        done_ = false;
        changed_.notify_all();
    }
    void wait() {
        std::unique_lock guard(mutex_);
        changed_.wait(guard, [this] { return done_; });
    }
    void run(std::function<void()> work) {
        post(std::move(work));
        wait();
    }

private:
    void serve() {
        for (;;) {
            std::function<void()> work;
            {
                std::unique_lock guard(mutex_);
                changed_.wait(guard, [this] { return static_cast<bool>(work_); });
                work = std::move(work_);
                work_ = nullptr;
            }
            work();
            std::lock_guard guard(mutex_);
            done_ = true;
            changed_.notify_all();
            if (stop_) return;
        }
    }

    std::mutex mutex_;
    std::condition_variable changed_;
    std::function<void()> work_;
    bool done_ = true;
    bool stop_ = false;  // written and read by the helper thread only
    std::thread thread_;
};

enum class Holder { none, self, helper };

// What the lock is: who holds it, how deep this thread holds an RLock, its consistency, and whether the
// next acquirer is told the previous owner died.
struct Model {
    Holder holder = Holder::none;
    std::uint32_t depth = 0;
    mproc::LockConsistency consistency = mproc::LockConsistency::consistent;
    bool owner_died = false;
};

enum class Outcome { acquired, owner_died, timed_out, not_recoverable, state_error };

template <class Handle>
Outcome acquire(Handle& lock, std::optional<std::chrono::nanoseconds> timeout) {
    try {
        switch (lock.acquire_status(timeout)) {
        case mproc::AcquireStatus::acquired: return Outcome::acquired;
        case mproc::AcquireStatus::owner_died: return Outcome::owner_died;
        case mproc::AcquireStatus::timed_out: return Outcome::timed_out;
        }
    } catch (const mproc::NotRecoverable&) {
        return Outcome::not_recoverable;
    } catch (const mproc::StateError&) {
        return Outcome::state_error;
    }
    return Outcome::state_error;
}

template <class Handle>
class Scenario {
public:
    static constexpr bool kRecursive = std::is_same_v<Handle, mproc::RLock>;

    void step(std::uint8_t operation, std::uint8_t argument) {
        switch (operation % 9) {
        case 0: helper_acquires(argument & 1); break;
        case 1: helper_releases(); break;
        case 2: helper_ends_holding(); break;
        case 3: self_acquires(std::chrono::milliseconds(1 + argument % 3)); break;
        case 4: self_sleeps_until(false, std::chrono::milliseconds(argument % 3)); break;
        case 5: self_sleeps_until(true, std::chrono::milliseconds(argument % 3)); break;
        case 6: self_releases(); break;
        case 7: self_repairs(); break;
        default: self_try_lock(); break;
        }
        require(lock_.consistency() == observed_consistency(), "consistency() is the model's");
        require(lock_.held_by_this_thread() == (model_.holder == Holder::self), "held_by_this_thread() is the model's");
    }

    // Leaves nothing held, so that the lock can be unmapped.
    void finish() {
        if (model_.holder == Holder::helper) helper_releases();
        while (model_.holder == Holder::self) self_releases();
    }

private:
    // What consistency() reports: a free lock whose owner died is inconsistent (the word says so) until
    // the next acquirer takes it; otherwise the state its holder left.
    mproc::LockConsistency observed_consistency() const {
        if (model_.consistency != mproc::LockConsistency::not_recoverable && model_.holder == Holder::none &&
            model_.owner_died)
            return mproc::LockConsistency::inconsistent;
        return model_.consistency;
    }

    // What an acquire by a thread that does not hold the lock must return; updates the model when taken.
    Outcome expect_acquire(Holder who) {
        if (model_.consistency == mproc::LockConsistency::not_recoverable) return Outcome::not_recoverable;
        const bool died = model_.owner_died;
        model_.owner_died = false;
        model_.holder = who;
        if (who == Holder::self) model_.depth = 1;
        if (died) {
            model_.consistency = mproc::LockConsistency::inconsistent;
            return Outcome::owner_died;
        }
        return Outcome::acquired;
    }

    // A release by the holder: an inconsistent lock becomes not recoverable.
    void model_release() {
        model_.holder = Holder::none;
        model_.depth = 0;
        if (model_.consistency == mproc::LockConsistency::inconsistent)
            model_.consistency = mproc::LockConsistency::not_recoverable;
    }

    void helper_acquires(bool repair) {
        if (model_.holder != Holder::none) return;  // the helper would wait for ever (this thread holds it)
        const Outcome expected = expect_acquire(Holder::helper);
        Outcome got = Outcome::state_error;
        helper().run([&] {
            got = acquire(lock_, std::nullopt);
            if (got == Outcome::owner_died && repair) lock_.make_consistent();
        });
        require(got == expected, "the helper's acquire is the model's");
        if (got == Outcome::owner_died && repair) model_.consistency = mproc::LockConsistency::consistent;
    }

    void helper_releases() {
        if (model_.holder != Holder::helper) return;
        helper().run([&] { lock_.unlock(); });
        model_release();
    }

    void helper_ends_holding() {
        if (model_.holder != Holder::helper) return;
        helper_.reset();  // the thread returns holding the lock: the kernel marks it FUTEX_OWNER_DIED
        model_.holder = Holder::none;
        model_.owner_died = true;
    }

    void self_acquires(std::chrono::milliseconds timeout) {
        Outcome expected;
        if (model_.holder == Holder::self) {
            if constexpr (kRecursive) {
                expected = Outcome::acquired;
                ++model_.depth;
            } else {
                expected = Outcome::state_error;  // a Lock this thread holds: refused, not a deadlock
            }
        } else if (model_.holder == Holder::helper) {
            expected = model_.consistency == mproc::LockConsistency::not_recoverable ? Outcome::not_recoverable
                                                                                      : Outcome::timed_out;
        } else {
            expected = expect_acquire(Holder::self);
        }
        require(acquire(lock_, timeout) == expected, "a timed acquire is the model's");
    }

    // A sleeper that is not woken still takes the free lock at its deadline (its last attempt), so a
    // missing wake-up shows only in the time it took: anything near the deadline means nobody woke it. The
    // bound is half of it: a wake-up takes microseconds, and this runs under sanitizers on a busy machine.
    static constexpr std::chrono::seconds kSleeperTimeout{8};

    // The helper holds the lock; this thread sleeps in a long acquire while the helper, after `pause`,
    // releases it or ends holding it. The sleeper must be woken and given the lock (owner_died after a
    // death), long before its deadline.
    void self_sleeps_until(bool helper_dies, std::chrono::milliseconds pause) {
        if (model_.holder != Holder::helper) return;
        if (helper_dies) {
            helper().post([pause] { std::this_thread::sleep_for(pause); });
            std::thread ender([this] { helper_.reset(); });  // waits for the pause, then the thread ends
            const auto start = std::chrono::steady_clock::now();
            const Outcome got = acquire(lock_, std::chrono::nanoseconds(kSleeperTimeout));
            require(std::chrono::steady_clock::now() - start < kSleeperTimeout / 2,
                    "the sleeper was woken by the holder's death, not by its own deadline");
            ender.join();
            model_.holder = Holder::none;
            model_.owner_died = true;
            require(got == expect_acquire(Holder::self), "a sleeper is handed the lock of a holder that died");
        } else {
            helper().post([this, pause] {
                std::this_thread::sleep_for(pause);
                lock_.unlock();
            });
            const auto start = std::chrono::steady_clock::now();
            const Outcome got = acquire(lock_, std::chrono::nanoseconds(kSleeperTimeout));
            require(std::chrono::steady_clock::now() - start < kSleeperTimeout / 2,
                    "the sleeper was woken by the release, not by its own deadline");
            helper().wait();
            model_release();
            require(got == expect_acquire(Holder::self), "a sleeper is handed the lock its holder released");
        }
    }

    void self_releases() {
        if (model_.holder != Holder::self) {
            bool refused = false;
            try {
                lock_.unlock();
            } catch (const mproc::StateError&) {
                refused = true;
            }
            require(refused, "unlock() by a thread that does not hold the lock is refused");
            return;
        }
        lock_.unlock();
        if (kRecursive && model_.depth > 1) {
            --model_.depth;
            return;
        }
        model_release();
    }

    void self_repairs() {
        if (model_.holder != Holder::self || model_.consistency != mproc::LockConsistency::inconsistent) return;
        lock_.make_consistent();
        model_.consistency = mproc::LockConsistency::consistent;
    }

    void self_try_lock() {
        if (model_.holder == Holder::self && !kRecursive) return;  // StateError, checked by self_acquires
        if (model_.holder == Holder::helper) {
            bool taken = true;
            try {
                taken = lock_.try_lock();
            } catch (const mproc::NotRecoverable&) {
                taken = false;
            }
            require(!taken, "try_lock() while the helper holds fails");
            return;
        }
        self_acquires(0ms);
    }

    Helper& helper() {
        if (!helper_) helper_.emplace();
        return *helper_;
    }

    Handle lock_;
    Model model_;
    std::optional<Helper> helper_;
};

template <class Handle>
void run(const std::uint8_t* data, std::size_t size) {
    Scenario<Handle> scenario;
    for (std::size_t offset = 1; offset + 2 <= size; offset += 2) scenario.step(data[offset], data[offset + 1]);
    scenario.finish();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    if (data[0] & 1)
        run<mproc::RLock>(data, size);
    else
        run<mproc::Lock>(data, size);
    return 0;
}
