// mproc/process.hpp — Python's multiprocessing.Process for C++: run a callable in a forked child, or a
// registered entry in a child of any start method (fork, spawn, forkserver: mproc/context.hpp).
//
// Defines: ProcessOptions, Process, CurrentProcess, current_process().
//
// Guarantees
// - The callable and its arguments are copied (decayed, as std::thread does; std::ref passes a reference)
//   when the Process is constructed; the child calls fn(args...) on its copies.
// - start() flushes stdio (and std::cout/cerr/clog), then fork()s; the child runs fn(args...), flushes its
//   own stdio and leaves with _exit(): the parent's atexit handlers and static destructors never run twice,
//   and output the parent had buffered is never written twice. Exit status 0 when fn returns, 1 when an
//   exception escapes it: error() then gives its what() (at most the first 4096 bytes; a thrown object
//   that is not a std::exception gives kNonStandardExceptionText). fn may end the child with _exit(n):
//   exitcode n (exit(n) would run the parent's atexit handlers in the child).
// - exitcode() follows Python's rule: empty while the child runs (or before start), its exit status once
//   it ended, -N when signal N killed it.
// - join() and join(timeout) block on a pidfd with ppoll(): no polling loop, no SIGCHLD handler. A timeout
//   is measured on CLOCK_MONOTONIC; EINTR is retried with the time that remains, so a signal never
//   shortens it. A timeout of zero or less checks without blocking. Where pidfd_open() is missing
//   (Linux < 5.3; valgrind 3.19 runs us that way) a detached thread per child blocks in waitid(WNOWAIT)
//   and makes an eventfd readable instead: the same behaviour, one thread more per running child.
// - terminate()/kill() signal through the pidfd, so they can never hit another process that reused the
//   pid; on a child that already ended they do nothing.
// - sentinel() is a pollable fd that becomes readable when the child ends (valid until destruction).
// - A daemon child is killed (SIGKILL) when the thread that started it dies: PR_SET_PDEATHSIG. Both
//   fork/prctl races are closed: start() returns only once the child has armed the signal (so the
//   starting thread cannot end unnoticed in between), and the child re-checks getppid() after prctl (a
//   child whose parent process died in between SIGKILLs itself). Note the kernel's rule: the death signal
//   fires when the parent *thread* exits, not the parent process, so a daemon started from a std::thread
//   dies when that thread ends. Start daemons from a thread that lives as long as they should. A
//   non-daemon child outlives its parent and is re-parented (to init or the nearest subreaper).
// - Every child a Process started is reaped by it by the time it is destroyed: no zombie is left behind.
//
// Costs: start() is one fork() plus a pidfd and a pipe for the error text; for a daemon it also waits for
// the child to be scheduled and arm its death signal (one pipe round trip); join() one ppoll() and one
// waitid(); exitcode()/is_alive() one waitid(WNOHANG) until the child has been reaped, nothing after.
//
// Misuse: start() twice, join()/terminate()/kill()/sentinel() before start(), start() on a moved-from
// Process, or changing name/daemon after start() throws StateError, as Python raises. start(), join() and
// is_alive() are only for the process that created the Process (a copy inherited by a forked child throws
// StateError there, as Python's "can only join a child process"). Destroying a started Process that has
// not been joined: a daemon is killed and reaped; a non-daemon is joined (Python joins non-daemonic
// children at exit), which blocks until it ends. The destructor never throws. A moved-from Process is
// inert: its destructor does nothing. One Process object must not be used from several threads at once
// without external synchronisation (as with any standard-library object).
//
// Requirements on the program: SIGCHLD must not be set to SIG_IGN and nothing else may reap the child
// (waitpid(-1, ...)): either takes the exit status away, and join() then throws SystemError (ECHILD).
//
// Forking a multi-threaded parent: only the thread that called start() exists in the child. The child
// runs nothing but fn and _exit (mproc itself allocates nothing there and only flushes stdio, which glibc
// keeps usable across fork(), as it does malloc), but a lock that another parent thread held at the fork
// stays held forever in the child, so only async-signal-safe work is strictly safe in fn then, as with any
// fork().
//
// Under the fork method the child is not a Python "spawn" child: it shares the parent's memory image at
// the fork, including every open fd (pipes, sockets) that is not closed explicitly. The spawn and
// forkserver methods (mproc/context.hpp) give a fresh image instead; every guarantee above holds for them
// too, with the differences context.hpp states (entries instead of callables, descriptors passed only by
// pass_fds, start() costs).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <sys/types.h>

#include "mproc/context.hpp"
#include "mproc/export.hpp"

namespace mproc {

struct ProcessOptions {
    std::string name;     // empty: "Process-N", N counting the Processes this process created
    bool daemon = false;  // killed when its parent dies; see above
    // The start method (mproc/context.hpp); empty: get_context() at start(), the process-wide default.
    std::optional<Context> context = std::nullopt;
    // Descriptors a spawn or fork-server child gets, at the same numbers (fork children inherit every
    // descriptor anyway). ValueError at start() for one that is not open.
    std::vector<int> pass_fds = {};
};

namespace detail {
template <class T>
inline constexpr bool is_entry = false;
template <class... Params>
inline constexpr bool is_entry<Entry<Params...>> = true;
}  // namespace detail

class MPROC_API Process {
public:
    // error() of a child whose fn threw an object not derived from std::exception.
    static constexpr const char* kNonStandardExceptionText = "exception not derived from std::exception";
    // error() keeps at most this many bytes of what(): one atomic pipe write that can never block the child.
    static constexpr std::size_t kErrorTextLimit = 4096;

    template <class Fn, class... Args>
        requires(!std::is_same_v<std::remove_cvref_t<Fn>, ProcessOptions> &&
                 !std::is_same_v<std::remove_cvref_t<Fn>, Process> &&
                 !detail::is_entry<std::remove_cvref_t<Fn>> &&
                 std::is_invocable_v<std::decay_t<Fn>&, std::unwrap_ref_decay_t<Args>&...>)
    explicit Process(Fn&& fn, Args&&... args)
        : Process(ProcessOptions{}, std::forward<Fn>(fn), std::forward<Args>(args)...) {}

    // A callable target: fork only (it cannot cross an exec); start() under another method throws ValueError.
    template <class Fn, class... Args>
        requires(!detail::is_entry<std::remove_cvref_t<Fn>> &&
                 std::is_invocable_v<std::decay_t<Fn>&, std::unwrap_ref_decay_t<Args>&...>)
    Process(ProcessOptions options, Fn&& fn, Args&&... args)
        : Process(std::move(options), std::function<void()>(
              [fn = std::forward<Fn>(fn), bound = std::make_tuple(std::forward<Args>(args)...)]() mutable {
                  std::apply(fn, bound);
              })) {}

    // Throws ValueError when target is empty.
    Process(ProcessOptions options, std::function<void()> target);

    // A registered entry (mproc/context.hpp) called on copies of args sent through the codec: runs under
    // every start method. Throws ValueError when the entry name is empty.
    Process(ProcessOptions options, EntryCall call);
    template <class... Params, class... Args>
    Process(ProcessOptions options, const Entry<Params...>& entry, Args&&... args)
        : Process(std::move(options), entry(std::forward<Args>(args)...)) {}
    template <class... Params, class... Args>
    explicit Process(const Entry<Params...>& entry, Args&&... args)
        : Process(ProcessOptions{}, entry(std::forward<Args>(args)...)) {}
    Process(Process&& other) noexcept;
    // A running child held by *this is first handled as the destructor would handle it.
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

    pid_t pid() const noexcept { return pid_; }  // 0 before start(); kept after the child ended
    int sentinel() const;                        // throws StateError before start()
    const std::string& name() const noexcept { return name_; }
    void set_name(std::string name);
    bool daemon() const noexcept { return daemon_; }
    void set_daemon(bool daemon);

private:
    // Reaps the child if it ended (waiting for that when block), recording exitcode_ and error_.
    // Returns whether the child has been reaped.
    bool reap_if_ended(bool block);
    void signal_child(int signal_number, const char* operation);
    void require_owner(const char* operation) const;
    void require_started(const char* operation) const;
    void read_error_text() noexcept;
    void wait_until_daemon_armed() noexcept;
    void take_from(Process& other) noexcept;  // leaves other inert
    void release_child() noexcept;  // the destructor's rule for a running child
    void close_fds() noexcept;
    std::string describe() const;
    void start_forked();
    void start_spawned();
    void start_from_fork_server();
    void adopt_child(pid_t child, int error_fd);  // opens the sentinel; on failure kills and reaps child


    std::function<void()> target_;  // released in the parent once the child has its copy
    std::string name_;
    bool daemon_ = false;
    pid_t owner_pid_ = 0;  // the process that created this object: only it may start, join and reap
    pid_t pid_ = 0;
    int pidfd_ = -1;  // the sentinel: a pidfd, or an eventfd where pidfd_open() is missing
    bool pidfd_is_process_fd_ = false;
    int error_fd_ = -1;  // read end of the child's error pipe (O_CLOEXEC | O_NONBLOCK)
    std::optional<int> exitcode_;
    std::string error_;
    std::optional<Context> context_;
    std::vector<int> pass_fds_;
    std::string entry_;  // the registered entry; empty for a callable target
    std::vector<std::byte> entry_arguments_;
};

struct CurrentProcess {
    std::string name;  // "MainProcess" in a process not started by mproc::Process
    pid_t pid;
};

// The running process: in a child started by a Process, that Process's name.
MPROC_API CurrentProcess current_process();

}  // namespace mproc
