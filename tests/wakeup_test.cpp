// tests/wakeup_test.cpp — every sleeper that a peer wakes is woken by that peer, not by a timer.
//
// The sleeps on an eventcount (queues, Pipe, wait()) are also bounded by a safety-net re-test, 50 ms: a
// notifier killed between taking the waiters flag and waking leaves no other wake-up. The net also hides a
// missing or misplaced notify: the sleeper is merely late, and every other test still passes. These tests
// run with the net off (MPROC_TEST_NO_RECHECK=1, honoured by test builds only, meson -Dtest_hooks=true; see
// src/eventcount.hpp), so that a wake-up the code forgets strands the sleeper for good. Event, Semaphore,
// Lock, Condition and Barrier sleep without a net already; they are here so that every place that sleeps
// on a futex and is woken by a peer is covered the same way.
//
// Each test is a series of hand-offs between a sleeper and a waker (a forked child and the test process, or
// two threads of one forked child). Round i: the waker lets the sleeper start its blocking call, waits until
// the sleeper's thread is blocked in futex(2) or futex_waitv(2) (read from /proc/PID/task/TID/syscall: the
// hand-off goes through the sleep and wake path, never through a spin that happens to see the data), then
// makes the one call that must wake it. The sleeper checks what it got and counts the round. A round not
// counted within kHandOffBound fails the test, naming the round: with the net on it would have been 50 ms
// late, with it off the sleeper never wakes. The bound is a liveness bound, not a speed target: a working
// wake-up takes microseconds; 10 s leaves room for a machine whose two CPUs are busy with other tests.
// The *AfterThe...Store variants put both sides on one CPU with the sleeper under SCHED_FIFO, so that it
// runs inside the waker's FUTEX_WAKE: a notify made before the store it announces is then always lost.
//
// A build without test_hooks, or a run without MPROC_TEST_NO_RECHECK=1, skips every test (exit 77): with
// the net on, a forgotten eventcount notify would only make them slower.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.hpp"
#include "eventcount.hpp"
#include "mproc/barrier.hpp"
#include "mproc/condition.hpp"
#include "mproc/event.hpp"
#include "mproc/lock.hpp"
#include "mproc/mpmc_ring.hpp"
#include "mproc/pipe.hpp"
#include "mproc/queue.hpp"
#include "mproc/semaphore.hpp"
#include "mproc/wait.hpp"

namespace {

using namespace std::chrono_literals;
using namespace mproc::test;
using mproc::Queue;
using mproc::QueueKind;

// futex_waitv(2) has no SYS_ name in the C library headers of Debian 12.
constexpr long kSysFutexWaitv = 449;

constexpr int kProcessRounds = 1000;
// Thread variants (run under ThreadSanitizer, which is several times slower) do fewer.
constexpr int kThreadRounds = 200;
constexpr std::chrono::milliseconds kHandOffBound = 10s;
// The whole series in a child: SIGALRM (default action: terminate) ends a sleeper stranded past every
// round's bound, so that no child outlives a failed test.
constexpr unsigned kSleeperAlarmSeconds = 120;

// The system call thread `tid` of process `pid` is blocked in now (-1: running, or unreadable).
long blocked_system_call(pid_t pid, pid_t tid) {
    std::ifstream file("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/syscall");
    std::string first;
    if (!(file >> first) || first == "running") return -1;
    try {
        return std::stol(first);
    } catch (const std::exception&) {
        return -1;
    }
}

bool blocked_in_futex(pid_t pid, pid_t tid) {
    const long number = blocked_system_call(pid, tid);
    return number == SYS_futex || number == kSysFutexWaitv;
}

void require_net_off() {
#if MPROC_TEST_HOOKS
    if (!mproc::detail::recheck_disabled())
        MPROC_SKIP("the re-check is on: run with MPROC_TEST_NO_RECHECK=1 (tests/meson.build does)");
#else
    MPROC_SKIP("built without -Dtest_hooks=true: the re-check cannot be switched off");
#endif
    std::ifstream self("/proc/self/task/" + std::to_string(::gettid()) + "/syscall");
    std::string first;
    if (!(self >> first)) MPROC_SKIP("/proc/PID/task/TID/syscall is unreadable: cannot tell a sleeper from a spinner");
}

// The rounds' shared state: the round the waker allows, the rounds the sleeper finished, its thread id, and
// the first round whose result was wrong.
struct HandOffLedger {
    std::atomic<int> allowed{-1};
    std::atomic<int> finished{0};
    std::atomic<pid_t> sleeper_tid{0};
    std::atomic<int> wrong_round{-1};
};

// One kind of hand-off. prepare(i) runs in the waker before round i is allowed (e.g. take the lock the
// sleeper will wait for); sleep(i) in the sleeper blocks until wake(i), which the waker calls once the
// sleeper is asleep; sleep returns false when what it received is wrong. Either may be empty but sleep.
struct HandOff {
    std::function<void()> setup_sleeper;  // in the sleeper, once, before the first round (adopt a Pipe end)
    std::function<void(int)> prepare;
    std::function<bool(int)> sleep;
    std::function<void(int)> wake;
};

// How the sleeper waits for the waker to allow its next round: never in futex(2), which the waker would
// mistake for the sleep it waits for.
enum class RoundWait { yield, nanosleep };

void run_sleeper(HandOffLedger& ledger, const HandOff& hand_off, int rounds, RoundWait round_wait = RoundWait::yield) {
    if (hand_off.setup_sleeper) hand_off.setup_sleeper();
    // relaxed: the id is read by the waker only to find this thread's /proc entry.
    ledger.sleeper_tid.store(::gettid(), std::memory_order_relaxed);
    for (int round = 0; round < rounds; ++round) {
        // acquire: pairs with the waker's release store, so what prepare(round) did is visible here.
        while (ledger.allowed.load(std::memory_order_acquire) < round) {
            if (round_wait == RoundWait::yield) std::this_thread::yield();
            else std::this_thread::sleep_for(20us);
        }
        if (!hand_off.sleep(round)) {
            // relaxed: read by the waker after the round's count below (release).
            ledger.wrong_round.store(round, std::memory_order_relaxed);
        }
        // release: pairs with the waker's acquire; the round's effects come before the count.
        ledger.finished.store(round + 1, std::memory_order_release);
    }
}

void run_waker(HandOffLedger& ledger, const HandOff& hand_off, int rounds, pid_t sleeper_pid) {
    // relaxed: see run_sleeper.
    wait_for([&] { return ledger.sleeper_tid.load(std::memory_order_relaxed) != 0; }, "the sleeper to start");
    const pid_t tid = ledger.sleeper_tid.load(std::memory_order_relaxed);
    for (int round = 0; round < rounds; ++round) {
        if (hand_off.prepare) hand_off.prepare(round);
        // release: pairs with the sleeper's acquire (see run_sleeper).
        ledger.allowed.store(round, std::memory_order_release);
        wait_for([&] { return blocked_in_futex(sleeper_pid, tid); },
                 "round " + std::to_string(round) + ": the sleeper to block in futex");
        if (hand_off.wake) hand_off.wake(round);
        // acquire: pairs with the sleeper's release store of its count.
        wait_for([&] { return ledger.finished.load(std::memory_order_acquire) > round; },
                 "round " + std::to_string(round) + " of " + std::to_string(rounds) +
                     ": the sleeper to be woken (a lost wake-up: nothing re-checks it)",
                 kHandOffBound);
        CPPUNIT_ASSERT_EQUAL_MESSAGE("the first round whose sleeper got the wrong result", -1,
                                     ledger.wrong_round.load(std::memory_order_relaxed));
    }
}

// The sleeper in a forked child, the waker in this process.
void hand_off_across_processes(const HandOff& hand_off, int rounds = kProcessRounds) {
    require_net_off();
    Shared<HandOffLedger> ledger;
    ForkedChild child([&] {
        ::alarm(kSleeperAlarmSeconds);
        run_sleeper(*ledger, hand_off, rounds);
    });
    run_waker(*ledger, hand_off, rounds, child.pid());
    assert_exited_cleanly(child.wait());
}

// The sleeper on a second thread: the same rounds, visible to ThreadSanitizer. Called inside
// in_a_child(): a sleeper left stranded by a failed round dies with that child, instead of waking later in
// objects the failed test has destroyed.
void hand_off_across_threads(const HandOff& hand_off, int rounds = kThreadRounds) {
    HandOffLedger ledger;
    std::string sleeper_failure;
    std::thread sleeper([&] {
        try {
            run_sleeper(ledger, hand_off, rounds);
        } catch (const std::exception& error) {
            sleeper_failure = error.what();
            ledger.wrong_round.store(-2, std::memory_order_relaxed);  // relaxed: read after join()
            ledger.finished.store(rounds, std::memory_order_release);  // release: ends the waker's wait
        }
    });
    try {
        run_waker(ledger, hand_off, rounds, ::getpid());
    } catch (...) {
        // A stranded sleeper never returns: leave the process rather than hang in join().
        sleeper.detach();
        throw;
    }
    sleeper.join();
    CPPUNIT_ASSERT_EQUAL_MESSAGE("the sleeper threw", std::string(), sleeper_failure);
}

// Runs body (which makes its objects and calls hand_off_across_threads) in a forked child; fails as the
// child fails.
void in_a_child(const std::function<void()>& body) {
    require_net_off();
    run_in_processes(1, [&](int) { body(); }, 120s);
}

// Pins the calling thread to one CPU for its lifetime, then restores what it had.
class PinnedToCpu {
public:
    explicit PinnedToCpu(int cpu) {
        if (::sched_getaffinity(0, sizeof before_, &before_) != 0)
            CPPUNIT_FAIL(std::string("sched_getaffinity: ") + std::strerror(errno));
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        if (::sched_setaffinity(0, sizeof one, &one) != 0)
            CPPUNIT_FAIL(std::string("sched_setaffinity: ") + std::strerror(errno));
    }
    PinnedToCpu(const PinnedToCpu&) = delete;
    PinnedToCpu& operator=(const PinnedToCpu&) = delete;
    ~PinnedToCpu() { ::sched_setaffinity(0, sizeof before_, &before_); }

private:
    cpu_set_t before_;
};

// The same hand-offs with the sleeper able to run in the middle of the waker's call: both on one CPU, the
// sleeper under SCHED_FIFO and the waker under SCHED_OTHER, so the kernel switches to the sleeper the
// moment the waker's FUTEX_WAKE makes it runnable, before the waker's next instruction. A wake-up sent
// before the store that makes the sleeper's condition true (notify before publish) is then always spent on
// a re-test that finds nothing, and the sleeper sleeps again for good; with the two on different CPUs
// whether a series meets that window is a matter of timing.
void hand_off_preempting_the_waker(const HandOff& hand_off, int rounds = kProcessRounds) {
    require_net_off();
    const int cpu = ::sched_getcpu();
    if (cpu < 0) CPPUNIT_FAIL(std::string("sched_getcpu: ") + std::strerror(errno));
    {
        // Probe in a child: SCHED_FIFO needs CAP_SYS_NICE or an RLIMIT_RTPRIO above zero.
        ForkedChild probe([] {
            const sched_param priority{1};
            ::_exit(::sched_setscheduler(0, SCHED_FIFO, &priority) == 0 ? 0 : 1);
        });
        const int status = probe.wait();
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            MPROC_SKIP("SCHED_FIFO is not permitted (no CAP_SYS_NICE, RLIMIT_RTPRIO 0): the sleeper cannot preempt");
    }
    PinnedToCpu pinned(cpu);
    Shared<HandOffLedger> ledger;
    ForkedChild child([&] {
        ::alarm(kSleeperAlarmSeconds);
        const sched_param priority{1};
        if (::sched_setscheduler(0, SCHED_FIFO, &priority) != 0) ::_exit(3);
        // The sleeper now outranks the waker on their one CPU: it must not spin waiting for its round (a
        // SCHED_FIFO thread alone at its priority gets a yield straight back), or the waker never runs.
        run_sleeper(*ledger, hand_off, rounds, RoundWait::nanosleep);
    });
    run_waker(*ledger, hand_off, rounds, child.pid());
    assert_exited_cleanly(child.wait());
}

// --- the hand-offs, one per place that sleeps on a futex and is woken by a peer ---

// A consumer asleep in get() on an empty queue, woken by put() (the not_empty eventcount).
HandOff get_woken_by_put(Queue<std::uint64_t>& queue) {
    return {{}, {},
            [&](int round) { return queue.get() == static_cast<std::uint64_t>(round); },
            [&](int round) { queue.put(static_cast<std::uint64_t>(round)); }};
}

// A producer asleep in put() on a full queue (capacity 2, kept full), woken by get() (not_full).
HandOff put_woken_by_get(Queue<std::uint64_t>& queue) {
    queue.put(0);
    queue.put(1);
    return {{}, {},
            [&](int round) {
                queue.put(static_cast<std::uint64_t>(round) + 2);
                return true;
            },
            [&](int round) {
                // The oldest item: the waker checks the order the sleeper's puts made.
                CPPUNIT_ASSERT_EQUAL(static_cast<std::uint64_t>(round), queue.get());
            }};
}

std::vector<std::byte> message_of_round(int round) {
    std::vector<std::byte> message(1 + static_cast<std::size_t>(round) % 300);
    for (std::size_t i = 0; i < message.size(); ++i) message[i] = static_cast<std::byte>(round + static_cast<int>(i));
    return message;
}

// A receiver asleep in recv_bytes() (futex_waitv on the ring's eventcount and the peer's holder words),
// woken by send_bytes().
HandOff recv_woken_by_send(mproc::PipeConnection& receiver, mproc::PipeConnection& sender, bool adopt) {
    return {[&receiver, adopt] {
                if (adopt) receiver.adopt();
            },
            {},
            [&](int round) { return receiver.recv_bytes() == message_of_round(round); },
            [&](int round) { sender.send_bytes(message_of_round(round)); }};
}

// A waiter asleep in Event::wait(), woken by set(); it clears the event before the next round.
HandOff wait_woken_by_set(mproc::Event& event) {
    return {{}, {},
            [&](int) {
                const bool set = event.wait();
                event.clear();
                return set;
            },
            [&](int) { event.set(); }};
}

// An acquirer asleep on a semaphore with no permit, woken by release().
HandOff acquire_woken_by_release(mproc::Semaphore& semaphore) {
    return {{}, {}, [&](int) { return semaphore.acquire(); }, [&](int) { semaphore.release(); }};
}

// A locker asleep on a lock the waker holds, woken by unlock(): the contended hand-off.
HandOff lock_woken_by_unlock(mproc::Lock& lock) {
    return {{},
            [&](int) { lock.lock(); },
            [&](int) {
                lock.lock();
                lock.unlock();
                return true;
            },
            [&](int) { lock.unlock(); }};
}

// A waiter asleep in Condition::wait(), woken by notify() (made under the lock, as required).
HandOff wait_woken_by_notify(mproc::Condition& condition) {
    return {{}, {},
            [&](int) {
                condition.lock();
                const bool notified = condition.wait();
                condition.unlock();
                return notified;
            },
            [&](int) {
                condition.lock();
                condition.notify();
                condition.unlock();
            }};
}

// The first of two parties asleep in Barrier::wait(), woken by the second's arrival.
HandOff wait_woken_by_last_arrival(mproc::Barrier& barrier) {
    return {{}, {},
            [&](int) {
                barrier.wait();
                return true;
            },
            [&](int) { barrier.wait(); }};
}

// A thread asleep in mproc::wait() on a queue and a Pipe end, woken alternately by a put and a send; it
// takes what woke it without blocking.
HandOff wait_woken_by_put_or_send(Queue<std::uint64_t>& queue, mproc::PipeConnection& receiver,
                                  mproc::PipeConnection& sender, bool adopt) {
    return {[&receiver, adopt] {
                if (adopt) receiver.adopt();
            },
            {},
            [&](int round) {
                const std::vector<std::size_t> ready = mproc::wait({queue, receiver});
                if (round % 2 == 0)
                    return ready == std::vector<std::size_t>{0} && queue.get_nowait() == static_cast<std::uint64_t>(round);
                return ready == std::vector<std::size_t>{1} && receiver.recv_bytes() == message_of_round(round);
            },
            [&](int round) {
                if (round % 2 == 0) queue.put(static_cast<std::uint64_t>(round));
                else sender.send_bytes(message_of_round(round));
            }};
}

// An MPMC ring in a MAP_SHARED mapping, for the calls Queue does not expose (peek).
class SharedMpmcRing {
public:
    SharedMpmcRing(std::size_t capacity, std::size_t slot_size)
        : size_(mproc::RawMpmcRing::required_size(capacity, slot_size)) {
        memory_ = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (memory_ == MAP_FAILED) CPPUNIT_FAIL(std::string("mmap: ") + std::strerror(errno));
        ring_.emplace(mproc::RawMpmcRing::init(memory_, size_, capacity, slot_size));
    }
    SharedMpmcRing(const SharedMpmcRing&) = delete;
    SharedMpmcRing& operator=(const SharedMpmcRing&) = delete;
    ~SharedMpmcRing() { ::munmap(memory_, size_); }
    mproc::RawMpmcRing& ring() { return *ring_; }

private:
    std::size_t size_;
    void* memory_ = nullptr;
    std::optional<mproc::RawMpmcRing> ring_;  // a handle has no empty state
};

std::span<const std::byte> bytes_of(const std::uint64_t& value) { return std::as_bytes(std::span(&value, 1)); }

// A producer asleep on the claim of a slot a consumer holds (peek), woken by the consumer's release (R:
// drop_claim). Ring of 2. Round i: the waker takes the sleeper's two items of the round before, puts a
// marker and peeks it (its slot stays claimed, the consumer position moves past it); the sleeper puts 2i
// into the other slot and 2i + 1 into the claimed one, where it sleeps on the claim; the waker's release()
// must wake it.
HandOff put_woken_by_claim_release(mproc::RawMpmcRing& ring, mproc::MpmcLease& lease) {
    constexpr std::uint64_t kMarker = ~std::uint64_t{0};
    return {{},
            [&](int round) {
                for (int previous = 2 * (round - 1); round > 0 && previous < 2 * round; ++previous) {
                    std::uint64_t got = 0;
                    CPPUNIT_ASSERT(ring.get(std::as_writable_bytes(std::span(&got, 1))) == mproc::RingStatus::ok);
                    CPPUNIT_ASSERT_EQUAL(static_cast<std::uint64_t>(previous), got);
                }
                CPPUNIT_ASSERT(ring.put(bytes_of(kMarker)) == mproc::RingStatus::ok);
                CPPUNIT_ASSERT(ring.peek(lease) == mproc::RingStatus::ok);
                std::uint64_t peeked = 0;
                std::memcpy(&peeked, lease.message().data(), sizeof peeked);
                CPPUNIT_ASSERT_EQUAL(kMarker, peeked);
            },
            [&](int round) {
                const std::uint64_t first = 2 * static_cast<std::uint64_t>(round);
                const std::uint64_t second = first + 1;
                return ring.put(bytes_of(first)) == mproc::RingStatus::ok &&
                       ring.put(bytes_of(second)) == mproc::RingStatus::ok;
            },
            [&](int) { lease.release(); }};
}

class WakeupTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(WakeupTest);
    CPPUNIT_TEST(testSpscGetIsWokenByEveryPut);
    CPPUNIT_TEST(testSpscPutIsWokenByEveryGet);
    CPPUNIT_TEST(testMpmcGetIsWokenByEveryPut);
    CPPUNIT_TEST(testMpmcPutIsWokenByEveryGet);
    CPPUNIT_TEST(testPipeRecvIsWokenByEverySend);
    CPPUNIT_TEST(testEventWaitIsWokenByEverySet);
    CPPUNIT_TEST(testSemaphoreAcquireIsWokenByEveryRelease);
    CPPUNIT_TEST(testLockIsHandedToItsSleepingWaiter);
    CPPUNIT_TEST(testConditionWaitIsWokenByEveryNotify);
    CPPUNIT_TEST(testBarrierSleeperIsWokenByTheLastArrival);
    CPPUNIT_TEST(testWaitIsWokenByEveryPutAndSend);
    CPPUNIT_TEST(testMpmcPutWaitingOnAClaimIsWokenByItsRelease);
    CPPUNIT_TEST(testMpmcPutWaitingOnAClaimIsWokenByItsReleaseThreads);
    CPPUNIT_TEST(testSpscGetIsWokenAfterThePublishingStore);
    CPPUNIT_TEST(testMpmcGetIsWokenAfterThePublishingStore);
    CPPUNIT_TEST(testSpscPutIsWokenAfterTheReleasingStore);
    CPPUNIT_TEST(testMpmcPutIsWokenAfterTheReleasingStore);
    CPPUNIT_TEST(testPipeRecvIsWokenAfterThePublishingStore);
    CPPUNIT_TEST(testWaitIsWokenAfterThePublishingStore);
    CPPUNIT_TEST(testSpscGetIsWokenByEveryPutThreads);
    CPPUNIT_TEST(testMpmcGetIsWokenByEveryPutThreads);
    CPPUNIT_TEST(testPipeRecvIsWokenByEverySendThreads);
    CPPUNIT_TEST(testEventWaitIsWokenByEverySetThreads);
    CPPUNIT_TEST(testSemaphoreAcquireIsWokenByEveryReleaseThreads);
    CPPUNIT_TEST(testLockIsHandedToItsSleepingWaiterThreads);
    CPPUNIT_TEST(testConditionWaitIsWokenByEveryNotifyThreads);
    CPPUNIT_TEST(testBarrierSleeperIsWokenByTheLastArrivalThreads);
    CPPUNIT_TEST(testWaitIsWokenByEveryPutAndSendThreads);
    CPPUNIT_TEST_SUITE_END();

public:
    void testSpscGetIsWokenByEveryPut() {
        Queue<std::uint64_t> queue(4, QueueKind::spsc);
        hand_off_across_processes(get_woken_by_put(queue));
    }
    void testSpscPutIsWokenByEveryGet() {
        Queue<std::uint64_t> queue(2, QueueKind::spsc);
        hand_off_across_processes(put_woken_by_get(queue));
    }
    void testMpmcGetIsWokenByEveryPut() {
        Queue<std::uint64_t> queue(4, QueueKind::mpmc);
        hand_off_across_processes(get_woken_by_put(queue));
    }
    void testMpmcPutIsWokenByEveryGet() {
        Queue<std::uint64_t> queue(2, QueueKind::mpmc);
        hand_off_across_processes(put_woken_by_get(queue));
    }
    void testPipeRecvIsWokenByEverySend() {
        auto ends = mproc::Pipe(false);
        hand_off_across_processes(recv_woken_by_send(ends.first, ends.second, true));
    }
    void testEventWaitIsWokenByEverySet() {
        mproc::Event event;
        hand_off_across_processes(wait_woken_by_set(event));
    }
    void testSemaphoreAcquireIsWokenByEveryRelease() {
        mproc::Semaphore semaphore(0);
        hand_off_across_processes(acquire_woken_by_release(semaphore));
    }
    void testLockIsHandedToItsSleepingWaiter() {
        mproc::Lock lock;
        hand_off_across_processes(lock_woken_by_unlock(lock));
    }
    void testConditionWaitIsWokenByEveryNotify() {
        mproc::Condition condition;
        hand_off_across_processes(wait_woken_by_notify(condition));
    }
    void testBarrierSleeperIsWokenByTheLastArrival() {
        mproc::Barrier barrier(2);
        hand_off_across_processes(wait_woken_by_last_arrival(barrier));
    }
    void testWaitIsWokenByEveryPutAndSend() {
        Queue<std::uint64_t> queue(4, QueueKind::spsc);
        auto ends = mproc::Pipe(false);
        hand_off_across_processes(wait_woken_by_put_or_send(queue, ends.first, ends.second, true));
    }

    void testMpmcPutWaitingOnAClaimIsWokenByItsRelease() {
        SharedMpmcRing shared(2, sizeof(std::uint64_t));
        mproc::MpmcLease lease;
        hand_off_across_processes(put_woken_by_claim_release(shared.ring(), lease));
    }
    void testMpmcPutWaitingOnAClaimIsWokenByItsReleaseThreads() {
        in_a_child([] {
            SharedMpmcRing shared(2, sizeof(std::uint64_t));
            mproc::MpmcLease lease;
            hand_off_across_threads(put_woken_by_claim_release(shared.ring(), lease));
        });
    }

    // The sleeper runs the moment it is woken, inside the waker's call: a notify made before the store it
    // announces is spent on a re-test that finds nothing.
    void testSpscGetIsWokenAfterThePublishingStore() {
        Queue<std::uint64_t> queue(4, QueueKind::spsc);
        hand_off_preempting_the_waker(get_woken_by_put(queue));
    }
    void testMpmcGetIsWokenAfterThePublishingStore() {
        Queue<std::uint64_t> queue(4, QueueKind::mpmc);
        hand_off_preempting_the_waker(get_woken_by_put(queue));
    }
    void testSpscPutIsWokenAfterTheReleasingStore() {
        Queue<std::uint64_t> queue(2, QueueKind::spsc);
        hand_off_preempting_the_waker(put_woken_by_get(queue));
    }
    void testMpmcPutIsWokenAfterTheReleasingStore() {
        Queue<std::uint64_t> queue(2, QueueKind::mpmc);
        hand_off_preempting_the_waker(put_woken_by_get(queue));
    }
    void testPipeRecvIsWokenAfterThePublishingStore() {
        auto ends = mproc::Pipe(false);
        hand_off_preempting_the_waker(recv_woken_by_send(ends.first, ends.second, true));
    }
    void testWaitIsWokenAfterThePublishingStore() {
        Queue<std::uint64_t> queue(4, QueueKind::mpmc);
        auto ends = mproc::Pipe(false);
        hand_off_preempting_the_waker(wait_woken_by_put_or_send(queue, ends.first, ends.second, true));
    }

    void testSpscGetIsWokenByEveryPutThreads() {
        in_a_child([] {
            Queue<std::uint64_t> queue(4, QueueKind::spsc);
            hand_off_across_threads(get_woken_by_put(queue));
        });
    }
    void testMpmcGetIsWokenByEveryPutThreads() {
        in_a_child([] {
            Queue<std::uint64_t> queue(4, QueueKind::mpmc);
            hand_off_across_threads(get_woken_by_put(queue));
        });
    }
    void testPipeRecvIsWokenByEverySendThreads() {
        in_a_child([] {
            auto ends = mproc::Pipe(false);
            hand_off_across_threads(recv_woken_by_send(ends.first, ends.second, false));
        });
    }
    void testEventWaitIsWokenByEverySetThreads() {
        in_a_child([] {
            mproc::Event event;
            hand_off_across_threads(wait_woken_by_set(event));
        });
    }
    void testSemaphoreAcquireIsWokenByEveryReleaseThreads() {
        in_a_child([] {
            mproc::Semaphore semaphore(0);
            hand_off_across_threads(acquire_woken_by_release(semaphore));
        });
    }
    void testLockIsHandedToItsSleepingWaiterThreads() {
        in_a_child([] {
            mproc::Lock lock;
            hand_off_across_threads(lock_woken_by_unlock(lock));
        });
    }
    void testConditionWaitIsWokenByEveryNotifyThreads() {
        in_a_child([] {
            mproc::Condition condition;
            hand_off_across_threads(wait_woken_by_notify(condition));
        });
    }
    void testBarrierSleeperIsWokenByTheLastArrivalThreads() {
        in_a_child([] {
            mproc::Barrier barrier(2);
            hand_off_across_threads(wait_woken_by_last_arrival(barrier));
        });
    }
    void testWaitIsWokenByEveryPutAndSendThreads() {
        in_a_child([] {
            Queue<std::uint64_t> queue(4, QueueKind::spsc);
            auto ends = mproc::Pipe(false);
            hand_off_across_threads(wait_woken_by_put_or_send(queue, ends.first, ends.second, false));
        });
    }
};

}  // namespace

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(WakeupTest, "unit");
