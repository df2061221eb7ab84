// src/resource_tracker.cpp — the tracker process of mproc/resource_tracker.hpp.
//
// Protocol: one pipe. Every process of the tree holds a copy of its write end (inherited through fork(),
// close-on-exec); the tracker holds only the read end. Messages are lines "R/name\n" (created) and
// "U/name\n" (unlinked), each written with one write() below PIPE_BUF, so lines of concurrent writers never
// interleave. EOF on the read end means every copy of the write end is closed: the whole tree has ended.
#include "mproc/resource_tracker.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mproc/error.hpp"

namespace mproc {

namespace {

// The write end of this tree's tracker pipe, or -1. Inherited by fork() as all memory is.
std::atomic<int> tracker_fd{-1};

void write_all(int fd, const std::string& text) noexcept {
    std::size_t done = 0;
    while (done < text.size()) {
        const ssize_t wrote = ::write(fd, text.data() + done, text.size() - done);
        if (wrote < 0 && errno == EINTR) continue;
        if (wrote <= 0) return;
        done += static_cast<std::size_t>(wrote);
    }
}

// Whether a process other than this one maps /dev/shm/NAME or holds it open.
bool in_use_elsewhere(const std::string& name) {
    const std::string path = "/dev/shm" + name;
    DIR* proc = ::opendir("/proc");
    if (proc == nullptr) return true;  // cannot tell: leave it
    const long self = static_cast<long>(::getpid());
    bool used = false;
    while (!used) {
        const dirent* entry = ::readdir(proc);
        if (entry == nullptr) break;
        char* end = nullptr;
        const long pid = std::strtol(entry->d_name, &end, 10);
        if (*end != '\0' || pid <= 0 || pid == self) continue;
        const std::string base = "/proc/" + std::string(entry->d_name);
        std::ifstream maps(base + "/maps");
        for (std::string line; !used && std::getline(maps, line);) {
            const std::size_t at = line.find(path);
            used = at != std::string::npos && line.size() == at + path.size();
        }
        if (DIR* fds = used ? nullptr : ::opendir((base + "/fd").c_str())) {
            while (const dirent* fd = ::readdir(fds)) {
                char target[4096];
                const ssize_t length = ::readlinkat(::dirfd(fds), fd->d_name, target, sizeof target - 1);
                if (length > 0 && std::string(target, static_cast<std::size_t>(length)) == path) {
                    used = true;
                    break;
                }
            }
            ::closedir(fds);
        }
    }
    ::closedir(proc);
    return used;
}

// The tracker: reads registrations until EOF, then cleans up. Runs in its own process; never returns.
[[noreturn]] void run_tracker(int read_fd, int warning_fd) {
    std::set<std::string> live;
    std::string pending;
    char buffer[4096];
    for (;;) {
        const ssize_t got = ::read(read_fd, buffer, sizeof buffer);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        pending.append(buffer, static_cast<std::size_t>(got));
        std::size_t newline;
        while ((newline = pending.find('\n')) != std::string::npos) {
            const std::string line = pending.substr(0, newline);
            pending.erase(0, newline + 1);
            if (line.size() < 2 || line[1] != '/') continue;  // not a message this tracker writes
            if (line[0] == 'R') live.insert(line.substr(1));
            else if (line[0] == 'U') live.erase(line.substr(1));
        }
    }
    std::vector<std::string> unlinked;
    std::vector<std::string> in_use;
    for (const std::string& name : live) {
        if (::access(("/dev/shm" + name).c_str(), F_OK) != 0) continue;  // unlinked by other means
        if (in_use_elsewhere(name)) {
            in_use.push_back(name);
            continue;
        }
        if (::shm_unlink(name.c_str()) == 0) unlinked.push_back(name);
    }
    if (!unlinked.empty()) {
        std::string warning = "mproc resource tracker: unlinked " + std::to_string(unlinked.size()) +
                              " leaked object" + (unlinked.size() == 1 ? "" : "s") + ":";
        for (const std::string& name : unlinked) warning += " " + name;
        write_all(warning_fd, warning + "\n");
    }
    if (!in_use.empty()) {
        std::string warning = "mproc resource tracker: left in place, still in use:";
        for (const std::string& name : in_use) warning += " " + name;
        write_all(warning_fd, warning + "\n");
    }
    std::_Exit(0);
}

}  // namespace

namespace detail {

void resource_tracker_note(char operation, const char* name) noexcept {
    // acquire: pairs with the release store in start_resource_tracker(), so the fd is the open pipe.
    const int fd = tracker_fd.load(std::memory_order_acquire);
    if (fd < 0 || name == nullptr) return;
    char line[300];
    const std::size_t length = std::strlen(name);
    if (length + 2 > sizeof line || length == 0) return;
    line[0] = operation;
    std::memcpy(line + 1, name, length);
    line[length + 1] = '\n';
    // One write below PIPE_BUF: atomic with respect to the other writers of the tree.
    ssize_t ignored;
    do {
        ignored = ::write(fd, line, length + 2);
    } while (ignored < 0 && errno == EINTR);
}

}  // namespace detail

bool resource_tracker_running() noexcept {
    // relaxed: a yes/no answer for the caller; nothing is read through it.
    return tracker_fd.load(std::memory_order_relaxed) >= 0;
}

bool start_resource_tracker(int warning_fd) {
    // relaxed: only this process's own earlier start (or its parent's, before fork) can have set it.
    if (tracker_fd.load(std::memory_order_relaxed) >= 0) return false;
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw_system_error("resource tracker: pipe2");
    const pid_t middle = ::fork();
    if (middle < 0) {
        const int error = errno;
        ::close(fds[0]);
        ::close(fds[1]);
        throw_system_error("resource tracker: fork", error);
    }
    if (middle == 0) {
        // Its own session, so signals to the tree's process group miss it; then a grandchild, so that it
        // is nobody's child in the tree (no zombie for the starter to reap).
        ::setsid();
        if (::fork() != 0) std::_Exit(0);
        // Keep the read end and the warning fd at 3 and 4; close everything else of the tree's, so that
        // the tracker holds no other process's pipe open.
        const int read_copy = ::fcntl(fds[0], F_DUPFD, 10);
        const int warning_copy = ::fcntl(warning_fd, F_DUPFD, 10);
        const int null_fd = ::open("/dev/null", O_RDWR);
        if (read_copy < 0 || null_fd < 0) std::_Exit(1);
        ::dup2(read_copy, 3);
        if (warning_copy >= 0) ::dup2(warning_copy, 4);
        else ::dup2(null_fd, 4);
        ::dup2(null_fd, 0);
        ::dup2(null_fd, 1);
        ::dup2(null_fd, 2);
        if (::syscall(SYS_close_range, 5u, ~0u, 0u) != 0) {
            for (int fd = 5; fd < 65536; ++fd) ::close(fd);
        }
        run_tracker(3, 4);
    }
    ::close(fds[0]);
    int status = 0;
    while (::waitpid(middle, &status, 0) < 0 && errno == EINTR) {
    }
    // release: pairs with the acquire in resource_tracker_note().
    tracker_fd.store(fds[1], std::memory_order_release);
    return true;
}

}  // namespace mproc
