// mproc/process.hpp — Python's multiprocessing.Process for C++: run a callable in a forked child.
//
// Guarantees
// - start() flushes stdio, then fork()s; the child runs fn(args...) and leaves with _exit(): the parent's
//   atexit handlers and static destructors never run twice. Exit status 0 when fn returns, 1 when an
//   exception escapes it (its what() is readable in the parent through error()).
// - exitcode() follows Python's rule: empty while the child runs (or before start), its exit status once
//   it ended, -N when signal N killed it.
// - join() and join(timeout) block on a pidfd with poll(): no polling loop, no SIGCHLD handler. A timeout
//   is measured on CLOCK_MONOTONIC; EINTR is retried with the time that remains.
// - sentinel() is a pollable fd that becomes readable when the child ends (valid until destruction).
// - A daemon child is killed (SIGKILL) when the process that started it dies: PR_SET_PDEATHSIG, with the
//   fork/prctl race closed by re-checking the parent after prctl.
// Costs: start() is one fork() plus a pidfd and a pipe for the error text; join() one poll() and waitid().
// Misuse: start() twice, join()/terminate()/kill() before start(), or changing name/daemon after start()
// throws StateError, as Python raises. Destroying a started Process that has not been joined: a daemon is
// killed and reaped; a non-daemon is joined (Python joins non-daemonic children at exit).
// The child is not a Python "spawn" child: it shares the parent's memory image at the fork.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include <sys/types.h>

namespace mproc {

struct ProcessOptions {
    std::string name;     // empty: "Process-N", N counting the Processes this process created
    bool daemon = false;  // killed when its parent dies; see above
};

class Process {
public:
    template <class Fn, class... Args>
    explicit Process(Fn&& fn, Args&&... args)
        : Process(ProcessOptions{}, std::forward<Fn>(fn), std::forward<Args>(args)...) {}

    template <class Fn, class... Args>
    Process(ProcessOptions options, Fn&& fn, Args&&... args)
        : Process(std::move(options), std::function<void()>(
              [fn = std::forward<Fn>(fn), bound = std::make_tuple(std::forward<Args>(args)...)]() mutable {
                  std::apply(fn, bound);
              })) {}

    Process(ProcessOptions options, std::function<void()> target);
    Process(Process&& other) noexcept;
    Process& operator=(Process&& other) noexcept;
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;
    ~Process();

    void start();
    void join();
    // Returns true when the child ended within the timeout (Python returns None and leaves exitcode None).
    bool join(std::chrono::nanoseconds timeout);

    bool is_alive();
    std::optional<int> exitcode();
    // The what() of the exception that escaped fn in the child; empty when none did (or not ended yet).
    std::string error();

    void terminate();  // SIGTERM
    void kill();       // SIGKILL

    pid_t pid() const noexcept { return pid_; }  // 0 before start()
    int sentinel() const;                        // throws StateError before start()
    const std::string& name() const noexcept { return name_; }
    void set_name(std::string name);
    bool daemon() const noexcept { return daemon_; }
    void set_daemon(bool daemon);

private:
    void reap_if_ended(bool block);
    void close_fds() noexcept;

    std::function<void()> target_;
    std::string name_;
    bool daemon_ = false;
    pid_t pid_ = 0;
    int pidfd_ = -1;
    int error_fd_ = -1;  // read end of the child's error pipe (O_CLOEXEC)
    std::optional<int> exitcode_;
    std::string error_;
};

struct CurrentProcess {
    std::string name;  // "MainProcess" in a process not started by mproc::Process
    pid_t pid;
};

CurrentProcess current_process();

}  // namespace mproc
