// src/process.cpp — mproc::Process: fork, pidfd, waitid. The contract is in include/mproc/process.hpp.
//
// Invariants
// - pid_ != 0 exactly when start() succeeded in this object (or the object it was moved from); pidfd_ (the
//   pidfd, or the fallback's eventfd) is then open until destruction, so sentinel() stays valid and stays
//   readable once the child ended.
// - exitcode_ is set exactly when this object reaped the child. Until then the pid cannot be reused, so
//   the only process that pid_ can name is our child.
// - The child's side (run_child) allocates nothing and takes no lock of mproc before fn runs, so a fork in
//   a multi-threaded parent adds no hazard of its own.
#include "mproc/process.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <exception>
#include <iostream>
#include <system_error>
#include <thread>

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "deadline.hpp"
#include "mproc/error.hpp"
#include "mproc_config.h"
#include "scm_rights.hpp"
#include "start_methods.hpp"

// The system-call numbers are the same on every architecture since the unified table (Linux 5.1/5.3);
// old libc headers may lack the names, the running kernel decides whether the calls exist.
#if !MPROC_HAVE_PIDFD_OPEN
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

namespace mproc {
namespace {

static_assert(Process::kErrorTextLimit <= PIPE_BUF,
              "the child's error text must fit one atomic pipe write, so an empty pipe always takes it whole");

// Counts the Processes this process created, for the default names. Reset to 0 in each child, so a child
// numbers its own children from 1, as Python's fork child restarts its counter.
std::atomic<unsigned long> created_process_count{0};

// The name current_process() reports; null means "MainProcess". Written only in a freshly forked child
// before fn runs, when the child has a single thread: any thread fn creates is ordered after the write.
const std::string* current_process_name = nullptr;

// Where pidfd_open() is missing (Linux < 5.3, or valgrind 3.19 running us), the same promise from a
// detached thread: it blocks in waitid(WNOWAIT), which leaves the child for reap_if_ended() to reap, then
// makes an eventfd readable. Returns the eventfd, or -1 with errno set.
int open_exit_eventfd(pid_t child) {
    const int sentinel = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (sentinel < 0) return -1;
    const int watcher_copy = ::fcntl(sentinel, F_DUPFD_CLOEXEC, 0);  // closing the sentinel must not
    if (watcher_copy < 0) {                                           // pull the fd from under the thread
        int dup_errno = errno;
        ::close(sentinel);
        errno = dup_errno;
        return -1;
    }
    try {
        std::thread([child, watcher_copy] {
            siginfo_t info{};
            // ECHILD (reaped elsewhere) ends the wait too: join() then reports it from its own waitid().
            while (::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR) {
            }
            const std::uint64_t ended = 1;
            ssize_t ignored = ::write(watcher_copy, &ended, sizeof ended);
            (void)ignored;
            ::close(watcher_copy);
        }).detach();
    } catch (const std::system_error& failure) {
        ::close(watcher_copy);
        ::close(sentinel);
        errno = failure.code().value();
        return -1;
    }
    return sentinel;
}

// A pollable fd that becomes readable when the child ends: its pidfd, or the fallback above.
// Returns -1 with errno set on failure.
int open_exit_sentinel(pid_t child, bool& is_pidfd) {
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, child, 0));
    is_pidfd = pidfd >= 0;
    if (pidfd >= 0 || errno != ENOSYS) return pidfd;
    return open_exit_eventfd(child);
}

// Blocks until the sentinel is readable (the child ended) or the deadline (if any) passed; EINTR is retried
// with the time that remains. Returns 1 when readable, 0 at the deadline, -errno on failure.
int wait_for_exit_sentinel(int sentinel, const detail::Deadline* deadline) noexcept {
    for (;;) {
        pollfd sentinel_poll{sentinel, POLLIN, 0};
        timespec remaining{};
        if (deadline) remaining = deadline->remaining_timespec();
        int ready = ::ppoll(&sentinel_poll, 1, deadline ? &remaining : nullptr, nullptr);
        if (ready > 0) return 1;
        if (ready == 0) return 0;  // ppoll waits at least the time asked, so the deadline has passed
        if (errno != EINTR) return -errno;
    }
}

// Writes out everything buffered for output, so that neither side of a fork writes the other's bytes.
// std::cout and friends write through stdio unless the program turned sync_with_stdio off; flushing them
// covers that case too.
void flush_all_output() noexcept {
    std::fflush(nullptr);
    try {
        std::cout.flush();
        std::cerr.flush();
        std::clog.flush();
    } catch (...) {
        // A stream set to throw on failure: the bytes are lost either way, and neither start() nor the
        // child's exit may fail because of it.
    }
}

// A daemon child's first byte on the error pipe: its death signal is armed (or arming failed, and error
// text follows). start() waits for it and consumes it, so the error text later finds the pipe empty.
constexpr char kDaemonSetupDoneByte = '\0';

// One write of at most kErrorTextLimit bytes into the empty, non-blocking error pipe: it goes in whole or
// fails, and can never block the child.
void report_error_text(int error_fd, const char* text) noexcept {
    std::size_t length = ::strnlen(text, Process::kErrorTextLimit);
    while (::write(error_fd, text, length) < 0 && errno == EINTR) {
    }
}

// Runs the child's target and leaves with its status: 0 when it returned, 1 when it threw (its text on the
// error channel), kUnknownEntryExitCode when it named an entry this program does not register.
[[noreturn]] void run_target_and_exit(const std::function<void()>& target, int error_write_fd) noexcept {
    int status = 0;
    try {
        target();
    } catch (const detail::UnknownEntry& unknown) {
        std::fprintf(stderr, "%s\n", unknown.message.c_str());
        report_error_text(error_write_fd, unknown.message.c_str());
        status = kUnknownEntryExitCode;
    } catch (const std::exception& escaped) {
        report_error_text(error_write_fd, escaped.what());
        status = 1;
    } catch (...) {
        report_error_text(error_write_fd, Process::kNonStandardExceptionText);
        status = 1;
    }
    flush_all_output();
    ::_exit(status);
}

// The child's whole life after fork(): never returns, never throws.
[[noreturn]] void run_child(std::function<void()>& target, const std::string& name, bool daemon,
                            pid_t parent_pid, int error_read_fd, int error_write_fd) noexcept {
    ::close(error_read_fd);
    if (daemon) {
        if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
            ssize_t ignored = ::write(error_write_fd, &kDaemonSetupDoneByte, 1);
            (void)ignored;
            report_error_text(error_write_fd, "daemon child: prctl(PR_SET_PDEATHSIG) failed");
            ::_exit(1);
        }
        // The parent may have died between fork() and prctl(), before the death signal was armed: then we
        // have been re-parented already. End the way the death signal would have ended us.
        if (::getppid() != parent_pid) {
            ::raise(SIGKILL);
            ::_exit(1);  // not reached: SIGKILL cannot be caught, blocked or ignored
        }
        // Tell start() the signal is armed. Until then the parent *thread* waits in start(): had it
        // returned and exited at once, the child would have been handed to a sibling thread before prctl()
        // with getppid() unchanged, and no death signal would ever come.
        while (::write(error_write_fd, &kDaemonSetupDoneByte, 1) < 0 && errno == EINTR) {
        }
    }
    current_process_name = &name;
    // relaxed: the child has one thread here; threads that fn starts are ordered after this store.
    created_process_count.store(0, std::memory_order_relaxed);
    run_target_and_exit(target, error_write_fd);
}

}  // namespace

Process::Process(ProcessOptions options, std::function<void()> target)
    : target_(std::move(target)), name_(std::move(options.name)), daemon_(options.daemon),
      owner_pid_(::getpid()), context_(options.context), pass_fds_(std::move(options.pass_fds)) {
    // relaxed: only the count matters, no other memory is published through it.
    unsigned long number = created_process_count.fetch_add(1, std::memory_order_relaxed) + 1;
    // Python numbers every Process it creates, named or not; only unnamed ones show the number.
    if (name_.empty()) name_ = "Process-" + std::to_string(number);
    if (!target_) throw ValueError(describe() + ": construct: the target is an empty std::function");
}

Process::Process(ProcessOptions options, EntryCall call)
    : Process(std::move(options), std::function<void()>([entry = call.entry, arguments = call.arguments] {
                  detail::call_registered_entry(entry, arguments);
              })) {
    if (call.entry.empty()) throw ValueError(describe() + ": construct: the entry name is empty");
    entry_ = std::move(call.entry);
    entry_arguments_ = std::move(call.arguments);
}

Process::Process(Process&& other) noexcept { take_from(other); }

Process& Process::operator=(Process&& other) noexcept {
    if (this == &other) return *this;
    release_child();
    close_fds();
    take_from(other);
    return *this;
}

void Process::take_from(Process& other) noexcept {
    target_ = std::move(other.target_);
    name_ = std::move(other.name_);
    daemon_ = other.daemon_;
    owner_pid_ = other.owner_pid_;
    pid_ = other.pid_;
    pidfd_ = other.pidfd_;
    pidfd_is_process_fd_ = other.pidfd_is_process_fd_;
    error_fd_ = other.error_fd_;
    exitcode_ = other.exitcode_;
    error_ = std::move(other.error_);
    context_ = other.context_;
    pass_fds_ = std::move(other.pass_fds_);
    entry_ = std::move(other.entry_);
    entry_arguments_ = std::move(other.entry_arguments_);
    // Inert from here on: no child, no fd, no target, so its destructor and start() do nothing harmful.
    other.target_ = nullptr;
    other.name_.clear();
    other.pid_ = 0;
    other.pidfd_ = -1;
    other.error_fd_ = -1;
    other.exitcode_.reset();
    other.error_.clear();
}

Process::~Process() {
    release_child();
    close_fds();
}

void Process::release_child() noexcept {
    // Only the creator can reap; a copy inherited through a later fork leaves the child to its parent.
    if (pid_ == 0 || exitcode_ || ::getpid() != owner_pid_) return;
    try {
        if (daemon_) signal_child(SIGKILL, "destroy");
        reap_if_ended(true);
    } catch (...) {
        // Only an error of the program (SIGCHLD ignored, the child reaped elsewhere) gets here: there is
        // nothing left to reap, and a destructor must not throw.
    }
}

void Process::close_fds() noexcept {
    if (pidfd_ >= 0) ::close(pidfd_);
    if (error_fd_ >= 0) ::close(error_fd_);
    pidfd_ = -1;
    error_fd_ = -1;
}

std::string Process::describe() const {
    std::string text = "process '" + name_ + "'";
    if (pid_ != 0) text += " (pid " + std::to_string(pid_) + ")";
    return text;
}

void Process::require_owner(const char* operation) const {
    if (::getpid() != owner_pid_)
        throw StateError(describe() + ": " + operation + ": only the process that created it (pid " +
                         std::to_string(owner_pid_) + ") may do this, not pid " + std::to_string(::getpid()));
}

void Process::require_started(const char* operation) const {
    if (pid_ == 0) throw StateError(describe() + ": " + operation + " before start()");
}

void Process::start() {
    if (pid_ != 0) throw StateError(describe() + ": start() called twice");
    if (!target_) throw StateError("process: start() on a moved-from Process");
    require_owner("start");
    if (detail::spawn_bootstrap_pending())
        throw StateError(describe() + ": start: this process is a fresh image started by mproc (spawn or "
                                      "forkserver) whose main() did not call mproc::spawn_main() first");
    const Context context = context_ ? *context_ : get_context();
    if (context.start_method() != StartMethod::fork && entry_.empty())
        throw ValueError(describe() + ": start: a callable target cannot travel to a '" + context.name() +
                         "' child; register a function with MPROC_ENTRY and construct the Process from its Entry");
    if (context.start_method() != StartMethod::fork) {
        for (int fd : pass_fds_)
            if (fd < 0 || ::fcntl(fd, F_GETFD) < 0)
                throw ValueError(describe() + ": start: pass_fds holds " + std::to_string(fd) +
                                 ", which is not an open descriptor");
    }
    switch (context.start_method()) {
    case StartMethod::fork:
        start_forked();
        break;
    case StartMethod::spawn:
        start_spawned();
        break;
    case StartMethod::forkserver:
        start_from_fork_server();
        break;
    }
    // Python drops target and arguments once the child has them; the parent's copies would only hold
    // resources.
    target_ = nullptr;
    entry_arguments_.clear();
}

void Process::start_forked() {
    int error_pipe[2];
    if (::pipe2(error_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        int pipe_errno = errno;
        throw_system_error(describe() + ": start: pipe2", pipe_errno);
    }
    // Made before the fork so that the child allocates nothing; start() never returns in the child, so
    // this stays alive for as long as current_process() can be asked.
    const std::string child_name = name_;
    const pid_t parent_pid = ::getpid();

    flush_all_output();
    const pid_t child = ::fork();
    if (child < 0) {
        int fork_errno = errno;
        ::close(error_pipe[0]);
        ::close(error_pipe[1]);
        throw_system_error(describe() + ": start: fork", fork_errno);
    }
    if (child == 0) run_child(target_, child_name, daemon_, parent_pid, error_pipe[0], error_pipe[1]);

    ::close(error_pipe[1]);
    adopt_child(child, error_pipe[0]);
    if (daemon_) wait_until_daemon_armed();
}

void Process::start_spawned() {
    // One socket pair is the child's whole link: the start request goes down it, the error text comes back.
    int channel[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, channel) != 0) {
        int pair_errno = errno;
        throw_system_error(describe() + ": start: socketpair", pair_errno);
    }
    std::vector<std::byte> frame(sizeof(std::uint64_t));
    try {
        std::vector<std::byte> request = detail::encode_start_request(
            detail::StartRequest{name_, entry_, entry_arguments_, static_cast<std::int32_t>(::getpid()), daemon_});
        const std::uint64_t size = request.size();
        std::memcpy(frame.data(), &size, sizeof size);
        frame.insert(frame.end(), request.begin(), request.end());
    } catch (...) {
        ::close(channel[0]);
        ::close(channel[1]);
        throw;
    }
    pid_t child;
    try {
        child = detail::launch_fresh_image(detail::kSpawnChannelVariable, std::to_string(channel[1]), channel[1],
                                           pass_fds_, daemon_, describe());
    } catch (...) {
        ::close(channel[0]);
        ::close(channel[1]);
        throw;
    }
    ::close(channel[1]);
    ::fcntl(channel[0], F_SETFL, O_NONBLOCK);
    adopt_child(child, channel[0]);
    // A child that ended before reading all of it ends with kBadRequestExitCode; exitcode() says so.
    detail::write_all(channel[0], frame, pidfd_, -1);
}

void Process::start_from_fork_server() {
    std::vector<std::byte> frame(sizeof(std::uint64_t));
    std::vector<std::byte> request = detail::encode_start_request(
        detail::StartRequest{name_, entry_, entry_arguments_, static_cast<std::int32_t>(::getpid()), daemon_,
                             std::vector<std::int32_t>(pass_fds_.begin(), pass_fds_.end())});
    const std::uint64_t size = request.size();
    std::memcpy(frame.data(), &size, sizeof size);
    frame.insert(frame.end(), request.begin(), request.end());

    const int connection = detail::connect_fork_server(describe());
    constexpr int kReplyTimeoutMs = 30000;
    std::size_t sent_with_fds = 0;
    try {
        // The descriptors go with the frame's first bytes (the server reads them with recvmsg).
        sent_with_fds = detail::scm_rights::send(connection, frame, pass_fds_, describe() + ": start: fork server");
    } catch (...) {
        ::close(connection);
        throw;
    }
    ::fcntl(connection, F_SETFL, O_NONBLOCK);
    char tag = 0;
    std::int32_t value = 0;
    if (!detail::write_all(connection, std::span<const std::byte>(frame).subspan(sent_with_fds), -1,
                           kReplyTimeoutMs) ||
        !detail::read_exact(connection, &tag, 1, kReplyTimeoutMs) ||
        !detail::read_exact(connection, &value, sizeof value, kReplyTimeoutMs) || (tag != 'P' && tag != 'E')) {
        ::close(connection);
        throw_system_error(describe() + ": start: the fork server did not answer (it died, or its child died "
                                        "before reporting its pid)",
                           EPROTO);
    }
    if (tag == 'E') {
        ::close(connection);
        throw_system_error(describe() + ": start: the fork server could not fork", value);
    }
    if (value <= 0) {
        ::close(connection);
        throw_system_error(describe() + ": start: the fork server's child reported pid " + std::to_string(value), EPROTO);
    }
    adopt_child(static_cast<pid_t>(value), connection);
    if (daemon_) wait_until_daemon_armed();
}

void Process::adopt_child(pid_t child, int error_fd) {
    bool is_pidfd = false;
    const int sentinel = open_exit_sentinel(child, is_pidfd);
    if (sentinel < 0) {
        int open_errno = errno;
        ::close(error_fd);
        if (open_errno == ESRCH)
            throw_system_error(describe() + ": start: pidfd_open on pid " + std::to_string(child) +
                                   ": the child was reaped elsewhere (SIGCHLD ignored, or waitpid(-1) in the "
                                   "program)",
                               open_errno);
        // Still our unreaped child, so the pid is safe to signal: do not leave it running or a zombie.
        ::kill(child, SIGKILL);
        while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
        }
        throw_system_error(describe() + ": start: opening the exit sentinel of pid " + std::to_string(child),
                           open_errno);
    }
    pid_ = child;
    pidfd_ = sentinel;
    pidfd_is_process_fd_ = is_pidfd;
    error_fd_ = error_fd;
}

void Process::wait_until_daemon_armed() noexcept {
    // Either the armed byte arrives, or the child ends first (killed before prctl(), or prctl() failed and
    // its error text follows); in both cases start() has nothing more to wait for.
    pollfd either[2] = {{error_fd_, POLLIN, 0}, {pidfd_, POLLIN, 0}};
    while (::poll(either, 2, -1) < 0) {
        if (errno != EINTR) return;  // cannot wait: read_error_text() skips the byte if it comes later
    }
    char first;
    ssize_t got;
    while ((got = ::read(error_fd_, &first, 1)) < 0 && errno == EINTR) {
    }
    // The daemon child writes the byte before anything else, so a byte that is not it cannot come first;
    // were it to, it belongs to the error text and is kept.
    if (got == 1 && first != kDaemonSetupDoneByte) error_.push_back(first);
}

bool Process::reap_if_ended(bool block) {
    if (exitcode_) return true;
    siginfo_t info{};
    while (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | (block ? 0 : WNOHANG)) != 0) {
        int wait_errno = errno;
        if (wait_errno == EINTR) continue;
        throw_system_error(describe() + ": waitid" +
                               (wait_errno == ECHILD ? " (the child was reaped elsewhere: SIGCHLD ignored, or "
                                                       "waitpid(-1) in the program?)"
                                                     : ""),
                           wait_errno);
    }
    if (info.si_pid == 0) return false;  // WNOHANG and still running
    exitcode_ = info.si_code == CLD_EXITED ? info.si_status : -info.si_status;
    read_error_text();
    return true;
}

void Process::read_error_text() noexcept {
    if (error_fd_ < 0) return;
    // The child has ended, so its one write is complete. Read until empty, not until EOF: a process forked
    // from the child (or from a sibling started concurrently) may still hold a copy of the write end.
    char buffer[kErrorTextLimit];
    for (;;) {
        ssize_t got = ::read(error_fd_, buffer, sizeof buffer);
        if (got > 0) {
            // A daemon's setup byte that start() could not take (its poll failed) comes first; error text
            // never starts with it, since report_error_text() stops at the first '\0'.
            const std::size_t skip = error_.empty() && buffer[0] == kDaemonSetupDoneByte ? 1 : 0;
            std::size_t room = kErrorTextLimit - std::min(error_.size(), kErrorTextLimit);
            try {
                error_.append(buffer + skip, std::min(static_cast<std::size_t>(got) - skip, room));
            } catch (...) {
                break;  // out of memory: keep what was read
            }
            continue;
        }
        if (got < 0 && errno == EINTR) continue;
        break;  // EOF, EAGAIN (empty) or an error: nothing more will come
    }
    ::close(error_fd_);
    error_fd_ = -1;
}

void Process::join() {
    require_started("join()");
    require_owner("join");
    if (exitcode_) return;
    int waited = wait_for_exit_sentinel(pidfd_, nullptr);
    if (waited < 0) throw_system_error(describe() + ": join: ppoll on the exit sentinel", -waited);
    reap_if_ended(true);
}

bool Process::join(std::chrono::nanoseconds timeout) {
    // Taken first, so that the checks below count against the caller's timeout.
    const detail::Deadline deadline = detail::Deadline::after(timeout);
    require_started("join(timeout)");
    require_owner("join");
    if (exitcode_) return true;
    int waited = wait_for_exit_sentinel(pidfd_, &deadline);
    if (waited < 0) throw_system_error(describe() + ": join: ppoll on the exit sentinel", -waited);
    if (waited == 0) return false;
    // The pidfd is readable: the child is a zombie now, so this waitid returns at once.
    return reap_if_ended(true);
}

bool Process::is_alive() {
    if (pid_ == 0) return false;
    require_owner("is_alive");
    return !reap_if_ended(false);
}

std::optional<int> Process::exitcode() {
    if (pid_ != 0 && ::getpid() == owner_pid_) reap_if_ended(false);
    return exitcode_;
}

std::string Process::error() {
    if (pid_ != 0 && ::getpid() == owner_pid_) reap_if_ended(false);
    return error_;
}

void Process::signal_child(int signal_number, const char* operation) {
    if (exitcode_) return;  // reaped: nothing to signal, and the pid may belong to another process now
    int sent = -1;
    if (pidfd_is_process_fd_) {
        sent = static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd_, signal_number, nullptr, 0));
        if (sent != 0 && errno == ESRCH) return;  // ended and reaped by someone else: Python ignores this too
    }
    // No pidfd (or a kernel/valgrind without pidfd_send_signal): kill() is equally exact while the child
    // is unreaped, which exitcode_ being empty says.
    if (!pidfd_is_process_fd_ || (sent != 0 && errno == ENOSYS)) sent = ::kill(pid_, signal_number);
    if (sent == 0) return;
    int signal_errno = errno;
    if (signal_errno == ESRCH) return;
    throw_system_error(describe() + ": " + operation + ": sending SIG" + sigabbrev_np(signal_number),
                       signal_errno);
}

void Process::terminate() {
    require_started("terminate()");
    signal_child(SIGTERM, "terminate");
}

void Process::kill() {
    require_started("kill()");
    signal_child(SIGKILL, "kill");
}

int Process::sentinel() const {
    require_started("sentinel()");
    return pidfd_;
}

void Process::set_name(std::string name) {
    if (pid_ != 0) throw StateError(describe() + ": set_name after start()");
    name_ = std::move(name);
}

void Process::set_daemon(bool daemon) {
    if (pid_ != 0) throw StateError(describe() + ": set_daemon after start()");
    daemon_ = daemon;
}

namespace detail {

void run_spawned_child(int channel_fd) noexcept {
    std::uint64_t size = 0;
    std::optional<StartRequest> request;
    std::string failure;
    try {
        if (!read_exact(channel_fd, &size, sizeof size, -1)) failure = "the start request was cut short";
        else if (size > kStartRequestLimit) failure = "the start request claims " + std::to_string(size) + " bytes";
        if (failure.empty()) {
            std::vector<std::byte> frame(size);
            if (!read_exact(channel_fd, frame.data(), frame.size(), -1)) failure = "the start request was cut short";
            else request = decode_start_request(frame);
        }
    } catch (const std::exception& error) {
        failure = error.what();
    }
    if (!request) {
        std::fprintf(stderr, "mproc spawned child (pid %d): %s\n", static_cast<int>(::getpid()), failure.c_str());
        ::_exit(kBadRequestExitCode);
    }
    ::fcntl(channel_fd, F_SETFL, O_NONBLOCK);  // the error text must never block the child
    // A fresh image: nothing to share with a parent, so the name may simply live for ever.
    current_process_name = new std::string(request->name);
    const std::function<void()> target = [&request] { call_registered_entry(request->entry, request->arguments); };
    run_target_and_exit(target, channel_fd);
}

namespace {

// Puts each received descriptor at the number its parent had for it (request.pass_fds), whatever numbers
// the server's recvmsg and our own connection got: first everything moves above every wanted number, then
// each goes to its place. Returns the connection's new number, or -1 (errno set) when a dup failed.
int place_passed_descriptors(int connection_fd, const StartRequest& request, std::span<const int> received_fds) {
    int above = 3;
    for (std::int32_t wanted : request.pass_fds) above = std::max(above, static_cast<int>(wanted) + 1);
    const int connection = ::fcntl(connection_fd, F_DUPFD_CLOEXEC, above);
    if (connection < 0) return -1;
    ::close(connection_fd);
    std::vector<int> moved;
    for (int fd : received_fds) {
        const int high = ::fcntl(fd, F_DUPFD_CLOEXEC, above);
        if (high < 0) return -1;
        ::close(fd);
        moved.push_back(high);
    }
    for (std::size_t i = 0; i < moved.size(); ++i) {
        if (::dup2(moved[i], request.pass_fds[i]) < 0) return -1;  // the copy is not close-on-exec, as spawn's
        ::close(moved[i]);
    }
    return connection;
}

}  // namespace

void run_fork_server_child(int connection_fd, const StartRequest& request, std::span<const int> received_fds) noexcept {
    if (!received_fds.empty()) {
        connection_fd = place_passed_descriptors(connection_fd, request, received_fds);
        if (connection_fd < 0) {
            std::fprintf(stderr, "mproc fork-server child (pid %d): placing pass_fds: %s\n",
                         static_cast<int>(::getpid()), std::strerror(errno));
            ::_exit(kBadRequestExitCode);  // the requester sees no pid, and start() fails
        }
    }
    // One writer for everything the requester reads: the pid first, then a daemon's armed byte, then (at
    // the end) the error text.
    char reply[1 + sizeof(std::int32_t)] = {'P'};
    const std::int32_t self = static_cast<std::int32_t>(::getpid());
    std::memcpy(reply + 1, &self, sizeof self);
    while (::send(connection_fd, reply, sizeof reply, MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
    if (request.daemon) {
        if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
            ssize_t ignored = ::write(connection_fd, &kDaemonSetupDoneByte, 1);
            (void)ignored;
            report_error_text(connection_fd, "daemon child: prctl(PR_SET_PDEATHSIG) failed");
            ::_exit(1);
        }
        // Our parent is the requester (CLONE_PARENT); had it died before the signal was armed, we would have
        // been re-parented already.
        if (::getppid() != request.parent_pid) ::kill(::getpid(), SIGKILL);
        while (::write(connection_fd, &kDaemonSetupDoneByte, 1) < 0 && errno == EINTR) {
        }
    }
    ::fcntl(connection_fd, F_SETFL, O_NONBLOCK);
    current_process_name = &request.name;  // the server's copy, which this child keeps until it ends
    const std::function<void()> target = [&request] { call_registered_entry(request.entry, request.arguments); };
    run_target_and_exit(target, connection_fd);
}

}  // namespace detail

CurrentProcess current_process() {
    return CurrentProcess{current_process_name ? *current_process_name : std::string("MainProcess"),
                          ::getpid()};
}

}  // namespace mproc
