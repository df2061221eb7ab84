#include "harness.hpp"

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

namespace mproc::test {
namespace {

constexpr int kChildSkippedStatus = 77;

// A pidfd for the child, or -1 where the kernel (before 5.3) or valgrind lacks pidfd_open: callers then
// fall back to polling waitpid(WNOHANG) every millisecond.
int open_pidfd(pid_t pid) {
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0 && errno != ENOSYS) {
        const int error_number = errno;
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        CPPUNIT_FAIL(std::string("pidfd_open: ") + std::strerror(error_number));
    }
    return fd;
}

// Without pidfds: true when the child has ended (and is reaped into *status) within wait_ms.
bool reap_within(pid_t pid, int* status, int wait_ms) {
    for (int waited = 0;; ++waited) {
        pid_t got = ::waitpid(pid, status, WNOHANG);
        if (got == pid) return true;
        if (got < 0 && errno != EINTR) return true;
        if (waited >= wait_ms) return false;
        ::usleep(1000);
    }
}

std::int64_t now_ms() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Runs body in the current (child) process and never returns: exit 0 on success, 77 on skip, 1 on failure
// with the message written to report_fd.
[[noreturn]] void run_child_body(const std::function<void()>& body, int report_fd) {
    std::string message;
    int status = 0;
    try {
        body();
    } catch (const Skipped& skipped) {
        message = skipped.reason;
        status = kChildSkippedStatus;
    } catch (const CppUnit::Exception& failure) {
        message = failure.what();
        if (failure.sourceLine().isValid())
            message += " (" + failure.sourceLine().fileName() + ":" +
                       std::to_string(failure.sourceLine().lineNumber()) + ")";
        status = 1;
    } catch (const std::exception& error) {
        message = std::string("uncaught exception: ") + error.what();
        status = 1;
    } catch (...) {
        message = "uncaught exception of unknown type";
        status = 1;
    }
    if (report_fd >= 0 && !message.empty()) {
        ssize_t ignored = ::write(report_fd, message.data(), message.size());
        (void)ignored;
    }
    std::fflush(nullptr);
    ::_exit(status);
}

std::string describe_status(int status) {
    if (WIFSIGNALED(status))
        return std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
               strsignal(WTERMSIG(status)) + ")";
    if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
    return "ended with wait status " + std::to_string(status);
}

std::string drain(int fd) {
    std::string text;
    char buffer[4096];
    for (;;) {
        ssize_t got = ::read(fd, buffer, sizeof buffer);
        if (got > 0) {
            text.append(buffer, static_cast<size_t>(got));
            continue;
        }
        if (got < 0 && errno == EINTR) continue;
        return text;
    }
}

}  // namespace

void run_in_processes(int count, const std::function<void(int index)>& body, std::chrono::milliseconds deadline) {
    struct Child {
        pid_t pid = -1;
        int pidfd = -1;
        int report_fd = -1;
        int status = 0;
        bool done = false;
    };
    std::vector<Child> children(static_cast<size_t>(count));
    std::fflush(nullptr);
    for (int index = 0; index < count; ++index) {
        int report[2];
        if (::pipe2(report, O_CLOEXEC) != 0) CPPUNIT_FAIL(std::string("pipe2: ") + std::strerror(errno));
        pid_t pid = ::fork();
        if (pid < 0) CPPUNIT_FAIL(std::string("fork: ") + std::strerror(errno));
        if (pid == 0) {
            ::close(report[0]);
            run_child_body([&] { body(index); }, report[1]);
        }
        ::close(report[1]);
        Child& child = children[static_cast<size_t>(index)];
        child.pid = pid;
        child.pidfd = open_pidfd(pid);
        child.report_fd = report[0];
    }

    const std::int64_t give_up_at = now_ms() + deadline.count();
    int remaining = count;
    bool timed_out = false;
    while (remaining > 0) {
        std::vector<pollfd> fds;
        std::vector<size_t> which;
        for (size_t i = 0; i < children.size(); ++i)
            if (!children[i].done) {
                fds.push_back({children[i].pidfd, POLLIN, 0});
                which.push_back(i);
            }
        std::int64_t left = give_up_at - now_ms();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        if (fds[0].fd < 0) {  // no pidfds: look at every child once a millisecond
            for (size_t k = 0; k < which.size(); ++k) {
                Child& child = children[which[k]];
                if (reap_within(child.pid, &child.status, 0)) {
                    child.done = true;
                    --remaining;
                }
            }
            if (remaining > 0) ::usleep(1000);
            continue;
        }
        int ready = ::poll(fds.data(), fds.size(), static_cast<int>(left));
        if (ready < 0 && errno == EINTR) continue;
        for (size_t k = 0; k < fds.size(); ++k)
            if (fds[k].revents & (POLLIN | POLLHUP)) {
                Child& child = children[which[k]];
                while (::waitpid(child.pid, &child.status, 0) < 0 && errno == EINTR) {
                }
                child.done = true;
                --remaining;
            }
    }

    std::string failures;
    bool skipped = false;
    std::string skip_reason;
    for (size_t i = 0; i < children.size(); ++i) {
        Child& child = children[i];
        if (!child.done) {
            ::kill(child.pid, SIGKILL);
            while (::waitpid(child.pid, &child.status, 0) < 0 && errno == EINTR) {
            }
            failures += "child " + std::to_string(i) + " did not finish within " +
                        std::to_string(deadline.count()) + " ms; ";
        }
        std::string message = drain(child.report_fd);
        ::close(child.report_fd);
        if (child.pidfd >= 0) ::close(child.pidfd);
        if (!child.done) continue;
        if (WIFEXITED(child.status) && WEXITSTATUS(child.status) == 0) continue;
        if (WIFEXITED(child.status) && WEXITSTATUS(child.status) == kChildSkippedStatus) {
            skipped = true;
            skip_reason = message;
            continue;
        }
        failures += "child " + std::to_string(i) + " " + describe_status(child.status);
        if (!message.empty()) failures += ": " + message;
        failures += "; ";
    }
    (void)timed_out;
    if (!failures.empty()) CPPUNIT_FAIL(failures);
    if (skipped) throw Skipped{skip_reason};
}

void run_in_threads(int count, const std::function<void(int index)>& body) {
    std::vector<std::thread> threads;
    std::mutex first_error_mutex;
    std::exception_ptr first_error;
    threads.reserve(static_cast<size_t>(count));
    for (int index = 0; index < count; ++index)
        threads.emplace_back([&, index] {
            try {
                body(index);
            } catch (...) {
                std::lock_guard guard(first_error_mutex);
                if (!first_error) first_error = std::current_exception();
            }
        });
    for (auto& thread : threads) thread.join();
    if (first_error) std::rethrow_exception(first_error);
}

namespace {

// Installs the filter of run_with_futex_waitv_refused() in the calling process; returns why it could not, or "".
std::string refuse_futex_waitv_in_this_process() {
#if defined(__x86_64__)
    constexpr std::uint32_t kThisArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
    constexpr std::uint32_t kThisArch = AUDIT_ARCH_AARCH64;
#else
    constexpr std::uint32_t kThisArch = 0;
#endif
    if (kThisArch == 0) return "the test knows no seccomp architecture constant for this CPU";
    constexpr std::uint32_t kFutexWaitvNumber = 449;  // the same on every architecture (asm-generic)
    sock_filter program[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kThisArch, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kFutexWaitvNumber, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog filter{static_cast<unsigned short>(sizeof program / sizeof program[0]), program};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return std::string("prctl(PR_SET_NO_NEW_PRIVS): ") + std::strerror(errno);
    if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter, 0, 0) != 0)
        return std::string("prctl(PR_SET_SECCOMP): ") + std::strerror(errno);
    return "";
}

}  // namespace

void run_with_futex_waitv_refused(const std::function<void()>& body) {
    struct Refusal {
        char failure[256];
    };
    Shared<Refusal> refusal;
    run_in_processes(1, [&](int) {
        const std::string failure = refuse_futex_waitv_in_this_process();
        if (!failure.empty()) {
            std::snprintf(refusal->failure, sizeof refusal->failure, "%s", failure.c_str());
            return;
        }
        body();
    });
    if (refusal->failure[0] != '\0')
        MPROC_SKIP(std::string("cannot install a seccomp filter: ") + refusal->failure);
}

std::chrono::milliseconds thread_cpu_time() {
    timespec now{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return std::chrono::milliseconds(std::int64_t(now.tv_sec) * 1000 + now.tv_nsec / 1'000'000);
}

void assert_slept(const WaitTiming& timing) {
    CPPUNIT_ASSERT_MESSAGE("the wait used " + std::to_string(timing.cpu.count()) + " ms of CPU in " +
                               std::to_string(timing.waited.count()) + " ms",
                           timing.cpu * 4 <= timing.waited + 20ms);
}

ForkedChild::ForkedChild(const std::function<void()>& body) {
    std::fflush(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) CPPUNIT_FAIL(std::string("fork: ") + std::strerror(errno));
    if (pid_ == 0) run_child_body(body, -1);
    pidfd_ = open_pidfd(pid_);
}

ForkedChild::~ForkedChild() {
    if (!reaped_ && pid_ > 0) {
        ::kill(pid_, SIGKILL);
        int status;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
    }
    if (pidfd_ >= 0) ::close(pidfd_);
}

void ForkedChild::kill(int signal_number) {
    if (!reaped_) ::kill(pid_, signal_number);
}

int ForkedChild::wait(std::chrono::milliseconds deadline) {
    CPPUNIT_ASSERT_MESSAGE("ForkedChild::wait called twice", !reaped_);
    const std::int64_t give_up_at = now_ms() + deadline.count();
    if (pidfd_ < 0) {
        int status = 0;
        if (!reap_within(pid_, &status, static_cast<int>(deadline.count()))) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, &status, 0);
            reaped_ = true;
            CPPUNIT_FAIL("forked child " + std::to_string(pid_) + " did not finish within " +
                         std::to_string(deadline.count()) + " ms");
        }
        reaped_ = true;
        return status;
    }
    pollfd fd{pidfd_, POLLIN, 0};
    for (;;) {
        std::int64_t left = give_up_at - now_ms();
        if (left <= 0) {
            ::kill(pid_, SIGKILL);
            int status;
            ::waitpid(pid_, &status, 0);
            reaped_ = true;
            CPPUNIT_FAIL("forked child " + std::to_string(pid_) + " did not finish within " +
                         std::to_string(deadline.count()) + " ms");
        }
        int ready = ::poll(&fd, 1, static_cast<int>(left));
        if (ready > 0) break;
        if (ready < 0 && errno != EINTR) CPPUNIT_FAIL(std::string("poll: ") + std::strerror(errno));
    }
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    return status;
}

char process_state(pid_t pid) {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
    std::FILE* file = std::fopen(path, "r");
    if (file == nullptr) return 0;
    char line[512] = {};
    const bool read = std::fgets(line, sizeof line, file) != nullptr;
    std::fclose(file);
    const char* after_name = read ? std::strrchr(line, ')') : nullptr;
    return after_name != nullptr && after_name[1] == ' ' ? after_name[2] : 0;
}

std::string unique_name(const std::string& tag) {
    static std::atomic<unsigned> counter{0};
    // relaxed: only uniqueness within this process matters, no other memory is published through it.
    unsigned n = counter.fetch_add(1, std::memory_order_relaxed);
    return "/mproc-test-" + std::to_string(::getpid()) + "-" + std::to_string(n) + "-" + tag;
}

bool asleep_in_futex(pid_t pid, pid_t tid) {
    std::ifstream file("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid == 0 ? pid : tid) +
                       "/syscall");
    long number = -1;
    // futex_waitv (449 on every architecture, Linux 5.16) is how Barrier, Pipe and wait() sleep.
    constexpr long kFutexWaitv = 449;
    return static_cast<bool>(file >> number) && (number == SYS_futex || number == kFutexWaitv);
}

void wait_until_asleep(pid_t pid, pid_t tid) {
    wait_for([&] { return asleep_in_futex(pid, tid); }, "process " + std::to_string(pid) + " to sleep in FUTEX_WAIT");
}

void assert_exited_cleanly(int status) {
    CPPUNIT_ASSERT_MESSAGE("child status " + std::to_string(status), WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

void assert_contains(const std::string& text, const std::string& part) {
    CPPUNIT_ASSERT_MESSAGE("'" + text + "' does not contain '" + part + "'", text.find(part) != std::string::npos);
}

namespace {

std::atomic<int> alarms_caught_in_storm{0};

void count_alarm(int) {
    // relaxed: a counter read after the timer is stopped; lock-free, so safe in a signal handler.
    alarms_caught_in_storm.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

AlarmStorm::AlarmStorm() {
    // relaxed: the handler runs on this process's threads and the count is read after stop(); nothing else
    // is published through it.
    alarms_caught_in_storm.store(0, std::memory_order_relaxed);
    struct sigaction on_alarm {};
    on_alarm.sa_handler = count_alarm;
    sigemptyset(&on_alarm.sa_mask);
    on_alarm.sa_flags = 0;  // no SA_RESTART: blocked calls return EINTR
    if (::sigaction(SIGALRM, &on_alarm, nullptr) != 0)
        CPPUNIT_FAIL(std::string("sigaction(SIGALRM): ") + std::strerror(errno));
    itimerval every_5ms{{0, 5000}, {0, 5000}};
    if (::setitimer(ITIMER_REAL, &every_5ms, nullptr) != 0)
        CPPUNIT_FAIL(std::string("setitimer: ") + std::strerror(errno));
}

void AlarmStorm::stop() {
    itimerval stopped{};
    ::setitimer(ITIMER_REAL, &stopped, nullptr);
}

int AlarmStorm::alarms_caught() {
    // relaxed: see the constructor.
    return alarms_caught_in_storm.load(std::memory_order_relaxed);
}

namespace {

struct TimedWaitOutcome {
    bool got;
    std::chrono::steady_clock::duration waited;
};

TimedWaitOutcome run_timed_wait(const std::function<bool()>& timed_wait) {
    const auto started = std::chrono::steady_clock::now();
    const bool got = timed_wait();
    return {got, std::chrono::steady_clock::now() - started};
}

void assert_timed_out_after(std::chrono::milliseconds timeout, const TimedWaitOutcome& outcome) {
    CPPUNIT_ASSERT(!outcome.got);
    CPPUNIT_ASSERT(outcome.waited >= timeout);
    CPPUNIT_ASSERT(outcome.waited < timeout + 2s);
}

}  // namespace

void assert_times_out_after(std::chrono::milliseconds timeout, const std::function<bool()>& timed_wait) {
    assert_timed_out_after(timeout, run_timed_wait(timed_wait));
}

void assert_signals_do_not_shorten(std::chrono::milliseconds timeout, const std::function<bool()>& timed_wait) {
    TimedWaitOutcome outcome;
    {
        AlarmStorm storm;
        outcome = run_timed_wait(timed_wait);
    }
    CPPUNIT_ASSERT(!outcome.got);
    CPPUNIT_ASSERT(AlarmStorm::alarms_caught() >= 5);
    assert_timed_out_after(timeout, outcome);
}

}  // namespace mproc::test
