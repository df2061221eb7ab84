// src/start_methods.hpp — the private side of the start methods (include/mproc/context.hpp): the entry
// registry, the start request both spawn and forkserver children read, launching a fresh image of the
// program, and the fork server. process.cpp runs the child's side; context.cpp holds the rest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include "mproc/context.hpp"

namespace mproc::detail {

// The environment variables that make spawn_main() act: the start channel of a spawn child, the listening
// socket and owner of a fork server.
inline constexpr const char* kSpawnChannelVariable = "MPROC_SPAWN_CHANNEL";
inline constexpr const char* kForkServerVariable = "MPROC_FORK_SERVER";
// argv[1] of a launched image, so that a main() that forgot spawn_main() sees an argument it does not know.
inline constexpr const char* kLaunchedImageArgument = "--mproc-child";

// Calls the entry registered under name; UnknownEntry when there is none.
void call_registered_entry(const std::string& name, std::span<const std::byte> arguments);
struct UnknownEntry {
    std::string message;
};

// What a spawn or fork-server child needs to become the Process's child.
struct StartRequest {
    std::string name;
    std::string entry;
    std::vector<std::byte> arguments;
    std::int32_t parent_pid = 0;  // the process that will wait for the child
    bool daemon = false;
    // The numbers, in the parent, of the descriptors passed (ProcessOptions::pass_fds): the child gets each
    // at the same number. A fork-server request carries the descriptors themselves with SCM_RIGHTS, in
    // this order, on the frame's first byte.
    std::vector<std::int32_t> pass_fds = {};
};
std::vector<std::byte> encode_start_request(const StartRequest& request);
StartRequest decode_start_request(std::span<const std::byte> bytes);  // DecodeError on anything else
// Frames: an 8-byte length (native order: both ends are this program on this machine), then the bytes.
inline constexpr std::uint64_t kStartRequestLimit = std::uint64_t{1} << 30;

// Starts a fresh image of this program (/proc/self/exe) through clone(CLONE_VM | CLONE_VFORK) + execve,
// with `variable=value` added to its environment. It keeps descriptors 0-2, keep_fd and pass_fds at their
// numbers; every other descriptor is closed by the exec. A daemon has its death signal armed before the
// exec (and is killed when its parent process died before that). Returns the pid; SystemError on failure
// (no child left behind). The caller checks that pass_fds are open (a closed one fails the launch with
// EBADF).
pid_t launch_fresh_image(const char* variable, const std::string& value, int keep_fd, std::span<const int> pass_fds,
                         bool daemon, const std::string& who);

// Whether this process is a launched image whose main() has not called spawn_main() yet.
bool spawn_bootstrap_pending() noexcept;

// process.cpp: the child's side of each method. They never return.
[[noreturn]] void run_spawned_child(int channel_fd) noexcept;
// received_fds: the request's descriptors as they arrived in the server, in request.pass_fds's order.
[[noreturn]] void run_fork_server_child(int connection_fd, const StartRequest& request,
                                        std::span<const int> received_fds) noexcept;

// context.cpp: a connected socket to this process's fork server (started on first use). SystemError on
// failure.
int connect_fork_server(const std::string& who);
[[noreturn]] void run_fork_server(int listen_fd, pid_t owner) noexcept;

// Writes all of bytes to a non-blocking socket; false when the peer is gone or the deadline passed
// (watch_fd, if >= 0, readable also ends it: the child ended).
bool write_all(int fd, std::span<const std::byte> bytes, int watch_fd, int timeout_ms) noexcept;
// Reads exactly size bytes (blocking or not: it polls); false on EOF, error or timeout (-1: none).
bool read_exact(int fd, void* data, std::size_t size, int timeout_ms) noexcept;

}  // namespace mproc::detail
