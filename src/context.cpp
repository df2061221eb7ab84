// src/context.cpp — start methods: contexts, the entry registry, launching a fresh image of the program,
// and the fork server. The contract is in include/mproc/context.hpp; the children's side is in process.cpp.
//
// The fork server's protocol, one connection per child:
//   requester: connect to the server's abstract AF_UNIX address, send one frame (8-byte length, the
//              encoded StartRequest);
//   server:    checks SO_PEERCRED (only its owner process may ask), reads the frame within 5 s, then
//              clone(CLONE_PARENT)s the child — so the child's parent is the owner, which waits for it as
//              for a forked child — and closes its copy of the connection. On failure it sends 'E' and
//              the errno (int32) instead;
//   child:     writes 'P' and its pid (int32) first, then for a daemon arms its death signal and writes
//              '\0', then runs the entry; the connection is its error channel (Process::error()).
// All the child writes comes from one writer, in that order, so the requester reads the pid, then the
// daemon's byte, and at the end the error text, like a forked child's error pipe.
#include "mproc/context.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>

#include <climits>
#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mproc/error.hpp"
#include "scm_rights.hpp"
#include "start_methods.hpp"

extern char** environ;

namespace mproc {
namespace {

constexpr const char* kMethodNames[] = {"fork", "spawn", "forkserver"};

std::optional<StartMethod> method_named(std::string_view name) noexcept {
    for (std::size_t i = 0; i < std::size(kMethodNames); ++i)
        if (name == kMethodNames[i]) return static_cast<StartMethod>(i);
    return std::nullopt;
}

// The process-wide default, as Python's _default_context: unset until set_start_method() or the first
// get_context()/get_start_method(allow_none=false) fixes it.
std::mutex default_method_mutex;
std::optional<StartMethod> default_method;

StartMethod fixed_default_method() {
    std::lock_guard<std::mutex> hold(default_method_mutex);
    if (!default_method) default_method = StartMethod::fork;
    return *default_method;
}

struct RegisteredEntry {
    std::uintptr_t function;
    detail::EntryInvoker invoke;
};

// Filled by static initialisers (MPROC_ENTRY), read by the children: a function-local static, so a
// registration from another translation unit's initialiser finds it constructed.
std::map<std::string, RegisteredEntry, std::less<>>& entry_registry() {
    static std::map<std::string, RegisteredEntry, std::less<>> registry;
    return registry;
}
std::mutex& entry_registry_mutex() {
    static std::mutex mutex;
    return mutex;
}

}  // namespace

const char* Context::name() const noexcept { return kMethodNames[static_cast<std::size_t>(method_)]; }

Context get_context(std::string_view method) {
    if (method.empty()) return Context(fixed_default_method());
    if (std::optional<StartMethod> known = method_named(method)) return Context(*known);
    throw ValueError("get_context: unknown start method '" + std::string(method) +
                     "' (known: fork, spawn, forkserver)");
}

void set_start_method(std::string_view method, bool force) {
    std::optional<StartMethod> known = method_named(method);
    if (!known)
        throw ValueError("set_start_method: unknown start method '" + std::string(method) +
                         "' (known: fork, spawn, forkserver)");
    std::lock_guard<std::mutex> hold(default_method_mutex);
    if (default_method && !force)
        throw StateError(std::string("set_start_method('") + std::string(method) +
                         "'): the start method was already set to '" +
                         kMethodNames[static_cast<std::size_t>(*default_method)] + "' (pass force = true)");
    default_method = *known;
}

std::string get_start_method(bool allow_none) {
    if (allow_none) {
        std::lock_guard<std::mutex> hold(default_method_mutex);
        return default_method ? kMethodNames[static_cast<std::size_t>(*default_method)] : "";
    }
    return kMethodNames[static_cast<std::size_t>(fixed_default_method())];
}

std::vector<std::string> get_all_start_methods() { return {"fork", "spawn", "forkserver"}; }

void spawn_main() {
    if (const char* channel = std::getenv(detail::kSpawnChannelVariable)) {
        // Only a socket descriptor above the standard streams is taken for a start channel: a variable
        // inherited by accident (or set by hand) must not make us read stdin or some other file.
        char* end = nullptr;
        const long fd = std::strtol(channel, &end, 10);
        const bool valid = end != channel && *end == '\0' && fd >= 3 && fd <= INT_MAX &&
                           detail::scm_rights::is_unix_stream_socket(static_cast<int>(fd));
        std::string text = channel;
        ::unsetenv(detail::kSpawnChannelVariable);
        if (!valid) {
            std::fprintf(stderr, "mproc spawned child (pid %d): %s=%s names no start channel\n",
                         static_cast<int>(::getpid()), detail::kSpawnChannelVariable, text.c_str());
            ::_exit(kBadRequestExitCode);
        }
        detail::run_spawned_child(static_cast<int>(fd));
    }
    if (const char* server = std::getenv(detail::kForkServerVariable)) {
        int listen_fd = -1;
        long owner = 0;
        char rest = 0;
        const bool parsed = std::sscanf(server, "%d:%ld%c", &listen_fd, &owner, &rest) == 2 && listen_fd >= 3 &&
                            owner > 0 && detail::scm_rights::is_unix_stream_socket(listen_fd);
        ::unsetenv(detail::kForkServerVariable);
        if (!parsed) {
            std::fprintf(stderr, "mproc fork server: malformed %s\n", detail::kForkServerVariable);
            ::_exit(kBadRequestExitCode);
        }
        detail::run_fork_server(listen_fd, static_cast<pid_t>(owner));
    }
}

namespace detail {

void register_entry_invoker(const std::string& name, std::uintptr_t function, EntryInvoker invoke) {
    if (name.empty()) throw ValueError("register_entry: the entry name is empty");
    std::lock_guard<std::mutex> hold(entry_registry_mutex());
    auto [where, inserted] = entry_registry().try_emplace(name, RegisteredEntry{function, invoke});
    if (!inserted && (where->second.function != function || where->second.invoke != invoke))
        throw ValueError("register_entry('" + name + "'): the name is already registered for another function");
}

void call_registered_entry(const std::string& name, std::span<const std::byte> arguments) {
    RegisteredEntry found{};
    {
        std::lock_guard<std::mutex> hold(entry_registry_mutex());
        auto where = entry_registry().find(name);
        if (where == entry_registry().end()) {
            std::string known;
            for (const auto& [registered, ignored] : entry_registry()) known += (known.empty() ? "" : ", ") + registered;
            throw UnknownEntry{"mproc child: no entry named '" + name + "' is registered in this program (" +
                               (known.empty() ? std::string("none is") : "registered: " + known) +
                               "); register it with MPROC_ENTRY at namespace scope"};
        }
        found = where->second;
    }
    found.invoke(found.function, arguments);
}

namespace {
constexpr std::uint32_t kStartRequestMagic = 0x6d707331;  // "mps1"
using RequestTuple = std::tuple<std::uint32_t, std::string, std::string, std::vector<std::byte>, std::int32_t, bool,
                                std::vector<std::int32_t>>;
}  // namespace

std::vector<std::byte> encode_start_request(const StartRequest& request) {
    return encode(RequestTuple{kStartRequestMagic, request.name, request.entry, request.arguments,
                               request.parent_pid, request.daemon, request.pass_fds});
}

StartRequest decode_start_request(std::span<const std::byte> bytes) {
    auto decoded = decode<RequestTuple>(bytes);
    if (std::get<0>(decoded) != kStartRequestMagic)
        throw DecodeError("start request: magic " + std::to_string(std::get<0>(decoded)) + ", expected " +
                          std::to_string(kStartRequestMagic));
    return StartRequest{std::move(std::get<1>(decoded)), std::move(std::get<2>(decoded)),
                        std::move(std::get<3>(decoded)), std::get<4>(decoded), std::get<5>(decoded),
                        std::move(std::get<6>(decoded))};
}

bool write_all(int fd, std::span<const std::byte> bytes, int watch_fd, int timeout_ms) noexcept {
    std::size_t sent = 0;
    while (sent < bytes.size()) {
        ssize_t wrote = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (wrote > 0) {
            sent += static_cast<std::size_t>(wrote);
            continue;
        }
        if (wrote < 0 && errno == EINTR) continue;
        if (wrote < 0 && errno != EAGAIN) return false;
        pollfd watch[2] = {{fd, POLLOUT, 0}, {watch_fd, POLLIN, 0}};
        int ready = ::poll(watch, watch_fd >= 0 ? 2 : 1, timeout_ms);
        if (ready == 0) return false;
        if (ready > 0 && watch_fd >= 0 && (watch[1].revents & POLLIN)) return false;
    }
    return true;
}

bool read_exact(int fd, void* data, std::size_t size, int timeout_ms) noexcept {
    auto* bytes = static_cast<char*>(data);
    std::size_t have = 0;
    while (have < size) {
        pollfd readable{fd, POLLIN, 0};
        int ready = ::poll(&readable, 1, timeout_ms);
        if (ready == 0) return false;
        if (ready < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        ssize_t got = ::recv(fd, bytes + have, size - have, MSG_DONTWAIT);
        if (got == 0) return false;
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return false;
        }
        have += static_cast<std::size_t>(got);
    }
    return true;
}

bool spawn_bootstrap_pending() noexcept {
    return std::getenv(kSpawnChannelVariable) != nullptr || std::getenv(kForkServerVariable) != nullptr;
}

// ---------------------------------------------------------------------------------------------------------
// Launching a fresh image.

namespace {

struct LaunchPlan {
    char* const* argv;
    char* const* envp;
    int keep_fd;
    const int* pass_fds;
    std::size_t pass_count;
    bool daemon;
    pid_t parent_pid;
    int highest_fd;  // for the fallback where close_range(CLOSE_RANGE_CLOEXEC) is missing (Linux < 5.11)
    sigset_t parent_mask;
    int failed_errno;  // written by the child before it _exits; read by the parent after clone returns
    const char* failed_step;
};

// The child of clone(CLONE_VM | CLONE_VFORK): it shares the parent's memory while the parent thread is
// suspended, so it only makes system calls (no allocation, no lock) until execve replaces it.
int run_launched_child(void* raw_plan) {
    LaunchPlan& plan = *static_cast<LaunchPlan*>(raw_plan);
    // A handler of the parent must not run here, on the parent's memory: every caught signal goes back to
    // its default (all signals are blocked until the mask is restored below).
    for (int signal_number = 1; signal_number < NSIG; ++signal_number) {
        struct sigaction current {};
        if (::sigaction(signal_number, nullptr, &current) != 0) continue;
        if (current.sa_handler == SIG_IGN || current.sa_handler == SIG_DFL) continue;
        struct sigaction reset {};
        reset.sa_handler = SIG_DFL;
        ::sigaction(signal_number, &reset, nullptr);
    }
    // Every descriptor closes across the exec, whether or not its owner asked for O_CLOEXEC ...
    if (::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        for (int fd = 3; fd <= plan.highest_fd; ++fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    // ... but the ones the child is given.
    if (::fcntl(plan.keep_fd, F_SETFD, 0) != 0) {
        plan.failed_errno = errno;
        plan.failed_step = "keeping the start channel";
        ::_exit(127);
    }
    for (std::size_t i = 0; i < plan.pass_count; ++i) {
        if (::fcntl(plan.pass_fds[i], F_SETFD, 0) != 0) {
            plan.failed_errno = errno;
            plan.failed_step = "keeping a descriptor of pass_fds";
            ::_exit(127);
        }
    }
    if (plan.daemon) {
        if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
            plan.failed_errno = errno;
            plan.failed_step = "prctl(PR_SET_PDEATHSIG)";
            ::_exit(127);
        }
        // The parent process died before the signal was armed: end as the death signal would have ended us.
        if (::getppid() != plan.parent_pid) ::kill(::getpid(), SIGKILL);
    }
    ::sigprocmask(SIG_SETMASK, &plan.parent_mask, nullptr);
    ::execve("/proc/self/exe", plan.argv, plan.envp);
    plan.failed_errno = errno;
    plan.failed_step = "execve(/proc/self/exe)";
    ::_exit(127);
}

}  // namespace

pid_t launch_fresh_image(const char* variable, const std::string& value, int keep_fd, std::span<const int> pass_fds,
                         bool daemon, const std::string& who) {
    // Everything the child needs is built here, before the clone: it must not allocate.
    std::string marker = std::string(variable) + "=" + value;
    std::vector<char*> envp;
    const std::size_t variable_length = std::strlen(variable);
    for (char** entry = environ; entry && *entry; ++entry) {
        // An inherited marker of another kind must not reach the child.
        if (std::strncmp(*entry, kSpawnChannelVariable, std::strlen(kSpawnChannelVariable)) == 0) continue;
        if (std::strncmp(*entry, kForkServerVariable, std::strlen(kForkServerVariable)) == 0) continue;
        if (std::strncmp(*entry, variable, variable_length) == 0 && (*entry)[variable_length] == '=') continue;
        envp.push_back(*entry);
    }
    envp.push_back(marker.data());
    envp.push_back(nullptr);
    std::string program = program_invocation_name ? program_invocation_name : "mproc-child";
    std::string argument = kLaunchedImageArgument;
    char* argv[] = {program.data(), argument.data(), nullptr};

    LaunchPlan plan{};
    plan.argv = argv;
    plan.envp = envp.data();
    plan.keep_fd = keep_fd;
    plan.pass_fds = pass_fds.data();
    plan.pass_count = pass_fds.size();
    plan.daemon = daemon;
    plan.parent_pid = ::getpid();
    const long open_max = ::sysconf(_SC_OPEN_MAX);
    plan.highest_fd = static_cast<int>(std::clamp(open_max, 1024L, 65536L));

    constexpr std::size_t kStackSize = 256 * 1024;  // sigaction's frames and execve; ASan builds need more
    void* stack = ::mmap(nullptr, kStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        int map_errno = errno;
        throw_system_error(who + ": start: mmap of the launch stack", map_errno);
    }
    sigset_t all;
    ::sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &plan.parent_mask);
    const pid_t child = ::clone(run_launched_child, static_cast<char*>(stack) + kStackSize,
                                CLONE_VM | CLONE_VFORK | SIGCHLD, &plan);
    const int clone_errno = errno;
    ::pthread_sigmask(SIG_SETMASK, &plan.parent_mask, nullptr);
    ::munmap(stack, kStackSize);
    if (child < 0) throw_system_error(who + ": start: clone", clone_errno);
    if (plan.failed_errno != 0) {
        while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
        }
        throw_system_error(who + ": start: " + plan.failed_step, plan.failed_errno);
    }
    return child;
}

// ---------------------------------------------------------------------------------------------------------
// The fork server.

namespace {

struct ForkServer {
    std::mutex mutex;
    pid_t owner = 0;   // the process that started it: a forked child of the owner starts its own
    pid_t server = 0;  // our child
    std::string address;  // abstract: starts with '\0'
};

ForkServer& fork_server() {
    static ForkServer state;
    return state;
}

sockaddr_un address_of(const std::string& name, socklen_t& length) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, name.data(), name.size());
    length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
    return address;
}

void start_fork_server(ForkServer& state, const std::string& who) {
    std::uint64_t nonce = 0;
    if (::getrandom(&nonce, sizeof nonce, 0) != sizeof nonce) nonce = static_cast<std::uint64_t>(::getpid()) << 20;
    char name[64];
    int name_length = std::snprintf(name, sizeof name, "%cmproc-forkserver-%d-%016llx", '\0', ::getpid(),
                                    static_cast<unsigned long long>(nonce));
    std::string address(name, static_cast<std::size_t>(name_length));

    const int listen_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd < 0) {
        int socket_errno = errno;
        throw_system_error(who + ": start: fork server socket", socket_errno);
    }
    socklen_t length = 0;
    sockaddr_un bound = address_of(address, length);
    if (::bind(listen_fd, reinterpret_cast<sockaddr*>(&bound), length) != 0 || ::listen(listen_fd, 64) != 0) {
        int bind_errno = errno;
        ::close(listen_fd);
        throw_system_error(who + ": start: binding the fork server's socket", bind_errno);
    }
    pid_t server;
    try {
        server = launch_fresh_image(kForkServerVariable, std::to_string(listen_fd) + ":" + std::to_string(::getpid()),
                                    listen_fd, {}, false, who + " (starting the fork server)");
    } catch (...) {
        ::close(listen_fd);
        throw;
    }
    ::close(listen_fd);
    if (state.server != 0 && state.owner == ::getpid()) {
        // The previous server of this process died: reap it if it has ended, so it does not stay a zombie.
        ::waitpid(state.server, nullptr, WNOHANG);
    }
    state.owner = ::getpid();
    state.server = server;
    state.address = std::move(address);
}

int connect_to(const std::string& address) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    socklen_t length = 0;
    sockaddr_un peer = address_of(address, length);
    while (::connect(fd, reinterpret_cast<sockaddr*>(&peer), length) != 0) {
        if (errno == EINTR) continue;
        int connect_errno = errno;
        ::close(fd);
        errno = connect_errno;
        return -1;
    }
    return fd;
}

}  // namespace

int connect_fork_server(const std::string& who) {
    ForkServer& state = fork_server();
    std::lock_guard<std::mutex> hold(state.mutex);
    if (state.owner != ::getpid()) start_fork_server(state, who);
    int fd = connect_to(state.address);
    if (fd < 0 && (errno == ECONNREFUSED || errno == ENOENT)) {
        // The server ended (killed, or it saw an owner that had died): start another once.
        start_fork_server(state, who);
        fd = connect_to(state.address);
    }
    if (fd < 0) {
        int connect_errno = errno;
        throw_system_error(who + ": start: connecting to the fork server (pid " + std::to_string(state.server) + ")",
                           connect_errno);
    }
    return fd;
}

void run_fork_server(int listen_fd, pid_t owner) noexcept {
    // The server's own image stays single-threaded and small: it only accepts, reads and clones.
    if (::getppid() != owner) ::_exit(0);
    // The robust-list head glibc registered for this thread: a raw clone() child starts without one.
    void* robust_head = nullptr;
    std::size_t robust_length = 0;
    ::syscall(SYS_get_robust_list, 0, &robust_head, &robust_length);
    for (;;) {
        pollfd listening{listen_fd, POLLIN, 0};
        const int ready = ::poll(&listening, 1, 1000);
        if (::getppid() != owner) ::_exit(0);  // the owner died: we were re-parented
        if (ready <= 0) continue;
        const int connection = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (connection < 0) continue;
        ucred peer{};
        socklen_t peer_length = sizeof peer;
        if (::getsockopt(connection, SOL_SOCKET, SO_PEERCRED, &peer, &peer_length) != 0 || peer.pid != owner ||
            peer.uid != ::getuid()) {
            ::close(connection);  // only the owner may ask: its children become the owner's children
            continue;
        }
        std::uint64_t size = 0;
        std::vector<std::byte> frame;
        std::optional<StartRequest> request;
        std::vector<UniqueFd> received;  // closed in the server once the child has its copies
        int failure = 0;
        try {
            // The descriptors ride on the frame's first byte: the length is read with recvmsg.
            std::size_t have = 0;
            auto* length_bytes = reinterpret_cast<std::byte*>(&size);
            while (have < sizeof size) {
                pollfd readable{connection, POLLIN, 0};
                if (::poll(&readable, 1, 5000) != 1) break;
                scm_rights::Received got = scm_rights::receive(
                    connection, std::span<std::byte>(length_bytes + have, sizeof size - have), "fork server");
                if (got.bytes == 0) break;
                have += got.bytes;
                for (UniqueFd& fd : got.fds) received.push_back(std::move(fd));
            }
            if (have == sizeof size && size <= kStartRequestLimit) {
                frame.resize(size);
                if (read_exact(connection, frame.data(), frame.size(), 5000)) request = decode_start_request(frame);
            }
            if (request && request->pass_fds.size() != received.size()) request.reset();
        } catch (...) {
            request.reset();
        }
        if (!request) failure = EPROTO;
        if (request) {
            // CLONE_PARENT: the child's parent is our parent, the owner, which waits for it (waitid, pidfd)
            // as for a child it forked. Its exit signal is ours, SIGCHLD.
            const long child = ::syscall(SYS_clone, CLONE_PARENT, 0, 0, 0, 0);
            if (child == 0) {
                ::syscall(SYS_set_robust_list, robust_head, robust_length);
                ::close(listen_fd);
                std::vector<int> received_fds;
                for (const UniqueFd& fd : received) received_fds.push_back(fd.get());
                run_fork_server_child(connection, *request, received_fds);
            }
            if (child < 0) failure = errno;
        }
        if (failure != 0) {
            char reply[1 + sizeof(std::int32_t)] = {'E'};
            const std::int32_t code = failure;
            std::memcpy(reply + 1, &code, sizeof code);
            ssize_t ignored = ::send(connection, reply, sizeof reply, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)ignored;
        }
        ::close(connection);
    }
}

}  // namespace detail
}  // namespace mproc
