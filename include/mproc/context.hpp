// mproc/context.hpp — start methods: how a Process's child comes to be (Python's multiprocessing contexts).
//
// Defines: StartMethod, Context, get_context(), set_start_method(), get_start_method(),
// get_all_start_methods(); Entry<Params...>, EntryCall, register_entry(), MPROC_ENTRY; spawn_main().
//
// The three methods (ProcessOptions::context picks one per Process; without one, the process-wide default)
// - "fork" (the default): fork() of the calling process. Cheapest, and the child sees the parent's memory
//   as it was, so any callable (a capturing lambda too) can be the target. The hazard: only the thread
//   that called start() exists in the child, and a lock another thread held at that instant (malloc's
//   arena lock, a logger's mutex) stays held for ever there, so a multi-threaded parent can start a
//   child that hangs on its first allocation (tests/context_test.cpp demonstrates it under a bound).
// - "spawn": a fresh exec of the program (/proc/self/exe) through clone(CLONE_VM | CLONE_VFORK) + execve:
//   no thread, lock or heap of the parent survives. The child runs a function the program registered
//   under a name (register_entry / MPROC_ENTRY), on arguments sent through the codec (mproc/codec.hpp).
// - "forkserver": a single-threaded server process, itself started like a spawn child on first use,
//   forks each child on request (sent over an AF_UNIX socket). The child is made a child of the
//   requesting process (clone with CLONE_PARENT), so join(), exitcode(), the sentinel, terminate() and
//   kill() work exactly as with fork. Same targets as spawn; the server's fork is cheap because the server
//   stays small and single-threaded.
//
// What the program must do for spawn and forkserver: call mproc::spawn_main() first in main(), before
// anything else that matters (Python's freeze_support()). In a process the library spawned it runs the
// requested entry (or the fork server) and never returns; anywhere else it returns at once. Entries must be
// registered before main() runs (MPROC_ENTRY at namespace scope does this), so the fresh image has them by
// the time spawn_main() looks. A spawned process whose main() forgets spawn_main() and reaches
// Process::start() gets StateError there (Python's "bootstrapping phase" error), never a recursive start.
//
// Guarantees (every method): everything process.hpp promises — exit codes (-N for signal N), error() text
// of a throwing target, join timeouts, the sentinel (a pidfd), terminate/kill, daemon children killed when
// the starting thread dies, current_process() (the Process's name in the child) and parent_process().
// - An entry whose name the child does not know ends it with exit code kUnknownEntryExitCode and a
//   message on stderr and in error() that names the entry; a request the child cannot decode ends it with
//   kBadRequestExitCode.
// - A spawn child inherits only descriptors 0, 1, 2 and ProcessOptions::pass_fds (at the same numbers):
//   every other descriptor is closed across the exec, whether or not it had O_CLOEXEC.
// - A fork-server child has the server's standard streams (the owner's, when the server started) and
//   pass_fds, which travel to the server with SCM_RIGHTS and are put at the same numbers; nothing else of
//   the requesting process. Besides those, each spawn or fork-server child holds one socket of its own,
//   its error channel (close-on-exec).
// - Anonymous objects reach such a child as descriptors: put `obj.fd()` in pass_fds, pass the number as an
//   argument, and re-attach it there with `X::from_fd(fd)` (PipeConnection::from_fd(fd, end) for a Pipe end).
// - The fork server ends within about a second of its owner's death (it polls getppid()). Only its owner
//   process may use it (SO_PEERCRED); a forked child of the owner starts a server of its own.
// - Daemons: a spawn daemon's death signal is armed before the exec, tied to the thread that called
//   start(), as with fork. A fork-server daemon's parent is the owner process, but the kernel ties its
//   death signal to the owner thread that started the fork server (the first forkserver start()): start
//   that first one from a thread that lives as long as the daemons should (the main thread).
// - A fork-server child is made by a raw clone(), not glibc's fork(): glibc's cached thread id of its
//   first thread is the server's, so glibc's own robust pthread mutexes do not see that thread's death
//   (mproc's Lock asks the kernel for the thread id and is not affected).
// Costs: spawn, one clone+exec and the program's start-up (its static initialisers and dynamic loading),
// plus one socket pair; forkserver, one connection and round trip to the server and one clone of the small
// server image; the first forkserver start also spawns the server. A forkserver start() waits at most
// 30 s for the server's answer (then SystemError EPROTO), and the server at most 5 s for a request.
// Misuse: an unknown method name → ValueError; set_start_method() a second time without force →
// StateError; a callable target (not an entry) under spawn or forkserver → ValueError at start(); a
// descriptor in pass_fds that is not open → ValueError at start(); an entry argument the codec cannot
// carry, or one not convertible to the parameter → compile error. The fork server's state is guarded by a
// mutex: a fork() while another thread holds it (inside a forkserver start()) leaves it held in the child.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/export.hpp"

namespace mproc {

enum class StartMethod : std::uint8_t { fork, spawn, forkserver };

// A start method as a value (Python's context object); compare with ==.
class MPROC_API Context {
public:
    constexpr explicit Context(StartMethod method) noexcept : method_(method) {}
    constexpr StartMethod start_method() const noexcept { return method_; }
    const char* name() const noexcept;  // "fork", "spawn" or "forkserver"
    friend constexpr bool operator==(Context, Context) noexcept = default;

private:
    StartMethod method_;
};

// The context of the named method; an empty name gives the default one (fixing the default as Python does).
// ValueError for any other name.
MPROC_API Context get_context(std::string_view method = {});
// Sets the process-wide default. StateError when it was set (or fixed by a get) before, unless force.
MPROC_API void set_start_method(std::string_view method, bool force = false);
// The default's name; with allow_none, "" while nothing fixed it yet (Python's None).
MPROC_API std::string get_start_method(bool allow_none = false);
// Every method this platform offers, the default first.
MPROC_API std::vector<std::string> get_all_start_methods();

// A spawned child runs its target, then leaves with these when it cannot.
inline constexpr int kUnknownEntryExitCode = 120;  // the entry name is not registered in the program
inline constexpr int kBadRequestExitCode = 121;    // the start request was cut short or undecodable

// Runs the spawned child's entry, or the fork server, when this process is one; returns otherwise.
MPROC_API void spawn_main();

// A call of a registered entry: its name and its arguments' encoding (what travels to the child).
struct EntryCall {
    std::string entry;
    std::vector<std::byte> arguments;
};

namespace detail {

// Decodes the arguments and calls the function; exceptions propagate to the child's runner.
using EntryInvoker = void (*)(std::uintptr_t function, std::span<const std::byte> arguments);

// ValueError when the name is empty or taken by another function.
MPROC_API void register_entry_invoker(const std::string& name, std::uintptr_t function, EntryInvoker invoke);

template <class Param, class Value>
decltype(auto) pass_as(Value& value) {
    if constexpr (std::is_lvalue_reference_v<Param>) return (value);
    else return std::move(value);
}

template <class R, class... Params>
void invoke_entry(std::uintptr_t function, std::span<const std::byte> arguments) {
    auto* fn = reinterpret_cast<R (*)(Params...)>(function);
    auto values = decode<std::tuple<std::decay_t<Params>...>>(arguments);
    std::apply([fn](auto&... value) { fn(pass_as<Params>(value)...); }, values);
}

}  // namespace detail

// A registered function, typed by its parameters: calling it makes the EntryCall a Process takes.
template <class... Params>
class Entry {
public:
    explicit Entry(std::string name) : name_(std::move(name)) {}
    const std::string& name() const noexcept { return name_; }

    template <class... Args>
        requires(sizeof...(Args) == sizeof...(Params) &&
                 (std::is_constructible_v<std::decay_t<Params>, Args &&> && ...))
    EntryCall operator()(Args&&... args) const {
        const std::tuple<std::decay_t<Params>...> values(std::forward<Args>(args)...);
        return EntryCall{name_, encode(values)};
    }

private:
    std::string name_;
};

// Registers fn under name for every start method. Call it before main() runs (MPROC_ENTRY does), so a
// spawned image registers it too. Parameters must decay to types the codec decodes; the result is ignored.
template <class R, class... Params>
    requires(Decodable<std::tuple<std::decay_t<Params>...>>)
Entry<Params...> register_entry(std::string name, R (*fn)(Params...)) {
    detail::register_entry_invoker(name, reinterpret_cast<std::uintptr_t>(fn), &detail::invoke_entry<R, Params...>);
    return Entry<Params...>(std::move(name));
}

}  // namespace mproc

// At namespace scope: `MPROC_ENTRY(worker_entry, worker);` registers `worker` under the name "worker" and
// names its Entry worker_entry: `Process p(options, worker_entry, 42, "text");`.
#define MPROC_ENTRY(handle, function) const auto handle = ::mproc::register_entry(#function, &function)
