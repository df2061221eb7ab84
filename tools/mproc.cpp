// tools/mproc.cpp — `mproc`, the operator's tool for named mproc objects in /dev/shm.
//
//   mproc ls [--json]               every mproc object: kind, name, size, layout version, creator and
//                                   whether it is alive, age; corrupt ones as invalid with the reason
//   mproc show NAME [--json]        the live state the header and payload allow, per kind
//   mproc rm NAME...                unlink objects whose creator is dead and that no process maps or holds
//   mproc rm --stale [--dry-run]    the same for every such object (--dry-run: say which, remove none)
//   mproc COMMAND --help
//
// Exit codes: 0 done; 1 an object is missing, not an mproc object, invalid (show), or was refused (rm: in
// use or its creator alive); 2 a usage error. The JSON schema is documented in docs/operators.md.
//
// Read-only by construction: objects are opened O_RDONLY and read with pread() into a private, aligned
// copy (no mapping, so a file truncated under the tool cannot raise SIGBUS); the copy goes through the
// library's validators (tools/inspect.cpp). The tool never takes a lock and never writes a byte of an
// object; the only change it makes is rm's unlink().
//
// Liveness: a creator is alive when a pidfd can be opened for its pid, the process it names started no
// later than the object was created (a pid reused by a younger process is dead to the tool), and the
// pidfd does not report an exit after that check. A lock owner (a thread id) is alive while
// /proc/TID exists; the kernel's owner-died mark is reported beside it. "In use" means some process maps
// the file (/proc/PID/maps) or holds it open (/proc/PID/fd).
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <new>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "inspect.hpp"

namespace {

using mproc::tool::ObjectReport;
using mproc::tool::json_string;

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr const char* kShmDir = "/dev/shm";

struct AlignedFree {
    void operator()(std::byte* bytes) const noexcept { ::operator delete(bytes, std::align_val_t{128}); }
};

// An object file as the tool saw it: its report, when it was created, and who uses it.
struct Observed {
    ObjectReport report;
    bool exists = false;
    std::string open_error;
    std::optional<std::int64_t> created_s;  // birth time, or the last status change when there is none
    std::optional<std::int64_t> created_ns;  // the same, to the nanosecond
    std::optional<bool> creator_alive;      // unknown (null) for objects that are not mproc objects
    std::vector<int> users;                 // pids that map the file or hold it open, this tool excluded
};

std::string path_of(const std::string& name) { return std::string(kShmDir) + name; }

// "jobs" or "/jobs" → "/jobs"; nullopt for what cannot name a file in /dev/shm.
std::optional<std::string> normalise_name(std::string name) {
    if (!name.empty() && name[0] == '/') name.erase(0, 1);
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos || name.size() > 255)
        return std::nullopt;
    return "/" + name;
}

// Nanoseconds since the epoch.
std::optional<std::int64_t> creation_time_ns(int fd, const struct stat& status) {
    struct statx extended {};
    if (::statx(fd, "", AT_EMPTY_PATH, STATX_BTIME, &extended) == 0 && (extended.stx_mask & STATX_BTIME) != 0)
        return std::int64_t{extended.stx_btime.tv_sec} * 1'000'000'000 + extended.stx_btime.tv_nsec;
    return std::int64_t{status.st_ctim.tv_sec} * 1'000'000'000 + status.st_ctim.tv_nsec;
}

// The start of process `pid` in nanoseconds since the epoch. /proc/PID/stat gives it in clock ticks since
// boot (CLOCK_BOOTTIME); the boot instant on the wall clock is taken from the two clocks now, to the
// nanosecond (/proc/stat's btime is whole seconds, which with the tick's floor could misjudge a process
// started two seconds after the object by more than the slack below).
std::optional<std::int64_t> process_start_ns(int pid) {
    std::ifstream stat_file("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat_file, line)) return std::nullopt;
    const std::size_t after_name = line.rfind(')');  // the command name may hold spaces and parentheses
    if (after_name == std::string::npos) return std::nullopt;
    std::istringstream fields(line.substr(after_name + 1));
    std::string field;
    // Fields after the name start at 3 (state); starttime is field 22.
    for (int index = 3; index <= 22; ++index)
        if (!(fields >> field)) return std::nullopt;
    const unsigned long long start_ticks = std::strtoull(field.c_str(), nullptr, 10);
    const long ticks_per_s = ::sysconf(_SC_CLK_TCK);
    if (ticks_per_s <= 0) return std::nullopt;
    timespec real {}, boot {};
    if (::clock_gettime(CLOCK_REALTIME, &real) != 0 || ::clock_gettime(CLOCK_BOOTTIME, &boot) != 0) return std::nullopt;
    const std::int64_t boot_on_wall_clock_ns = (std::int64_t{real.tv_sec} - boot.tv_sec) * 1'000'000'000 +
                                               (real.tv_nsec - boot.tv_nsec);
    return boot_on_wall_clock_ns +
           static_cast<std::int64_t>(start_ticks) * (1'000'000'000 / static_cast<std::int64_t>(ticks_per_s));
}

bool creator_is_alive(int pid, std::optional<std::int64_t> created_ns) {
    if (pid <= 0) return false;
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0 && errno != ENOSYS) return false;  // ESRCH: no such process
    const std::optional<std::int64_t> started = process_start_ns(pid);
    bool alive = started.has_value();
    // A younger process under the same pid is not the creator (one second of slack, for a wall clock set
    // between the two instants).
    if (alive && created_ns && *started > *created_ns + 1'000'000'000) alive = false;
    if (pidfd >= 0) {
        // The pidfd pins the process the check above looked at: readable means it has exited since.
        struct pollfd poll_fd {pidfd, POLLIN, 0};
        if (::poll(&poll_fd, 1, 0) > 0) alive = false;
        ::close(pidfd);
    }
    return alive;
}

bool thread_is_alive(std::uint32_t tid) {
    struct stat status {};
    return ::stat(("/proc/" + std::to_string(tid)).c_str(), &status) == 0;
}

// Pids (other than this one) that map /dev/shm/NAME or hold it open.
std::vector<int> users_of(const std::string& name) {
    const std::string path = path_of(name);
    std::vector<int> users;
    DIR* proc = ::opendir("/proc");
    if (proc == nullptr) return users;
    const int self = static_cast<int>(::getpid());
    while (const dirent* entry = ::readdir(proc)) {
        char* end = nullptr;
        const long pid = std::strtol(entry->d_name, &end, 10);
        if (*end != '\0' || pid <= 0 || pid == self) continue;
        const std::string base = "/proc/" + std::string(entry->d_name);
        bool uses = false;
        std::ifstream maps(base + "/maps");
        for (std::string line; !uses && std::getline(maps, line);) {
            const std::size_t at = line.find(path);
            uses = at != std::string::npos && line.size() == at + path.size();
        }
        if (!uses) {
            if (DIR* fds = ::opendir((base + "/fd").c_str())) {
                while (const dirent* fd = ::readdir(fds)) {
                    char target[4096];
                    const ssize_t length =
                        ::readlinkat(::dirfd(fds), fd->d_name, target, sizeof target - 1);
                    if (length > 0 && std::string(target, static_cast<std::size_t>(length)) == path) {
                        uses = true;
                        break;
                    }
                }
                ::closedir(fds);
            }
        }
        if (uses) users.push_back(static_cast<int>(pid));
    }
    ::closedir(proc);
    std::sort(users.begin(), users.end());
    return users;
}

Observed observe(const std::string& name, bool with_users) {
    Observed observed;
    observed.report.name = name;
    const int fd = ::open(path_of(name).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        observed.open_error = std::strerror(errno);
        return observed;
    }
    observed.exists = true;
    struct stat status {};
    if (::fstat(fd, &status) != 0 || !S_ISREG(status.st_mode)) {
        observed.open_error = "not a regular file";
        ::close(fd);
        return observed;
    }
    observed.created_ns = creation_time_ns(fd, status);
    if (observed.created_ns) observed.created_s = *observed.created_ns / 1'000'000'000;
    const std::size_t want =
        static_cast<std::size_t>(std::min<std::uint64_t>(static_cast<std::uint64_t>(status.st_size),
                                                          mproc::tool::kMaxSnapshotBytes));
    std::unique_ptr<std::byte, AlignedFree> buffer(
        static_cast<std::byte*>(::operator new(std::max<std::size_t>(want, 1), std::align_val_t{128})));
    std::size_t have = 0;
    while (have < want) {
        const ssize_t got = ::pread(fd, buffer.get() + have, want - have, static_cast<off_t>(have));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;  // shrunk under us, or an error: judge what was read
        have += static_cast<std::size_t>(got);
    }
    ::close(fd);
    // A file that shrank while being read is judged by the bytes it still had.
    const std::uint64_t file_size = have < want ? have : static_cast<std::uint64_t>(status.st_size);
    observed.report = mproc::tool::inspect_snapshot(std::span(buffer.get(), have), file_size, name);
    if (observed.report.is_mproc)
        observed.creator_alive = creator_is_alive(observed.report.creator_pid, observed.created_ns);
    for (const auto& thread : observed.report.threads)
        observed.report.state.push_back({thread.field, thread_is_alive(thread.tid) ? "true" : "false"});
    if (with_users) observed.users = users_of(name);
    return observed;
}

std::vector<std::string> names_in_shm() {
    std::vector<std::string> names;
    DIR* dir = ::opendir(kShmDir);
    if (dir == nullptr) return names;
    while (const dirent* entry = ::readdir(dir)) {
        if (entry->d_name[0] == '.') continue;
        names.push_back("/" + std::string(entry->d_name));
    }
    ::closedir(dir);
    std::sort(names.begin(), names.end());
    return names;
}

std::string json_optional_bool(std::optional<bool> value) {
    return value ? (*value ? "true" : "false") : "null";
}

std::string printable(const std::string& text) {
    std::string out;
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7f) {
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
            out += escaped;
        } else {
            out += c;
        }
    }
    return out;
}

// ls -----------------------------------------------------------------------------------------------------

std::string ls_json_line(const Observed& object, std::int64_t now_s) {
    const ObjectReport& r = object.report;
    std::string line = "{\"name\":" + json_string(r.name);
    line += ",\"kind\":" + (r.kind.empty() ? std::string("null") : json_string(r.kind));
    line += ",\"valid\":" + std::string(r.valid ? "true" : "false");
    line += ",\"reason\":" + (r.valid ? std::string("null") : json_string(r.reason));
    line += ",\"size\":" + std::to_string(r.file_size);
    line += ",\"layout_version\":" + std::to_string(r.layout_version);
    line += ",\"creator_pid\":" + std::to_string(r.creator_pid);
    line += ",\"creator_alive\":" + json_optional_bool(object.creator_alive);
    line += ",\"age_seconds\":" +
            (object.created_s ? std::to_string(std::max<std::int64_t>(0, now_s - *object.created_s)) : "null");
    return line + "}";
}

int command_ls(bool json) {
    const std::int64_t now_s = std::time(nullptr);
    std::vector<Observed> objects;
    for (const std::string& name : names_in_shm()) {
        Observed observed = observe(name, false);
        if (observed.exists && observed.report.is_mproc) objects.push_back(std::move(observed));
    }
    if (json) {
        std::cout << "{\"schema\":1,\"objects\":[";
        for (std::size_t i = 0; i < objects.size(); ++i)
            std::cout << (i == 0 ? "\n" : ",\n") << ls_json_line(objects[i], now_s);
        std::cout << "\n]}\n";
        return kExitOk;
    }
    std::printf("%-32s %-14s %12s %3s %8s %-5s %8s  %s\n", "NAME", "KIND", "SIZE", "VER", "CREATOR", "ALIVE",
                "AGE(s)", "STATUS");
    for (const Observed& object : objects) {
        const ObjectReport& r = object.report;
        const long long age = object.created_s ? std::max<std::int64_t>(0, now_s - *object.created_s) : -1;
        std::printf("%-32s %-14s %12llu %3u %8d %-5s %8lld  %s\n", printable(r.name).c_str(),
                    r.kind.empty() ? "?" : r.kind.c_str(), static_cast<unsigned long long>(r.file_size),
                    r.layout_version, r.creator_pid, object.creator_alive.value_or(false) ? "yes" : "no", age,
                    r.valid ? "ok" : ("invalid: " + printable(r.reason)).c_str());
    }
    return kExitOk;
}

// show ---------------------------------------------------------------------------------------------------

int command_show(const std::string& name, bool json) {
    const Observed object = observe(name, true);
    if (!object.exists || !object.open_error.empty()) {
        std::fprintf(stderr, "mproc show: %s: %s\n", printable(name).c_str(),
                     object.open_error.empty() ? "cannot be read" : object.open_error.c_str());
        return kExitFailed;
    }
    const ObjectReport& r = object.report;
    if (!r.is_mproc) {
        std::fprintf(stderr, "mproc show: %s is not an mproc object (no mproc header)\n", printable(name).c_str());
        return kExitFailed;
    }
    if (json) {
        std::string out = "{\"schema\":1,\"name\":" + json_string(r.name);
        out += ",\"kind\":" + (r.kind.empty() ? std::string("null") : json_string(r.kind));
        out += ",\"valid\":" + std::string(r.valid ? "true" : "false");
        out += ",\"reason\":" + (r.valid ? std::string("null") : json_string(r.reason));
        out += ",\"size\":" + std::to_string(r.file_size);
        out += ",\"layout_version\":" + std::to_string(r.layout_version);
        out += ",\"payload_size\":" + std::to_string(r.payload_size);
        out += ",\"creator_pid\":" + std::to_string(r.creator_pid);
        out += ",\"creator_alive\":" + json_optional_bool(object.creator_alive);
        out += ",\"users\":[";
        for (std::size_t i = 0; i < object.users.size(); ++i)
            out += (i == 0 ? "" : ",") + std::to_string(object.users[i]);
        out += "],\"state\":{";
        for (std::size_t i = 0; i < r.state.size(); ++i)
            out += (i == 0 ? "" : ",") + json_string(r.state[i].name) + ":" + r.state[i].json;
        out += "}}\n";
        std::cout << out;
    } else {
        std::printf("name            %s\n", printable(r.name).c_str());
        std::printf("kind            %s\n", r.kind.empty() ? "?" : r.kind.c_str());
        std::printf("status          %s\n", r.valid ? "ok" : ("invalid: " + printable(r.reason)).c_str());
        std::printf("size            %llu (payload %llu)\n", static_cast<unsigned long long>(r.file_size),
                    static_cast<unsigned long long>(r.payload_size));
        std::printf("layout version  %u\n", r.layout_version);
        std::printf("creator         pid %d, %s\n", r.creator_pid,
                    object.creator_alive.value_or(false) ? "alive" : "dead");
        std::string users;
        for (const int pid : object.users) users += (users.empty() ? "" : " ") + std::to_string(pid);
        std::printf("used by         %s\n", users.empty() ? "nobody" : users.c_str());
        for (const auto& field : r.state) std::printf("%-15s %s\n", field.name.c_str(), field.json.c_str());
    }
    if (!r.valid) {
        std::fprintf(stderr, "mproc show: %s is invalid: %s\n", printable(name).c_str(), printable(r.reason).c_str());
        return kExitFailed;
    }
    return kExitOk;
}

// rm -----------------------------------------------------------------------------------------------------

// Why `object` must not be removed, or "" when it may.
std::string refusal(const Observed& object) {
    if (!object.exists) return object.open_error.empty() ? "no such object" : object.open_error;
    if (!object.open_error.empty()) return object.open_error;
    if (!object.report.is_mproc) return "not an mproc object";
    if (!object.users.empty()) {
        std::string pids;
        for (const int pid : object.users) pids += (pids.empty() ? "" : " ") + std::to_string(pid);
        return "in use by pid " + pids;
    }
    if (object.creator_alive.value_or(false))
        return "its creator, pid " + std::to_string(object.report.creator_pid) + ", is alive";
    return "";
}

int remove_objects(const std::vector<std::string>& names, bool dry_run, bool only_stale) {
    int status = kExitOk;
    for (const std::string& name : names) {
        const Observed object = observe(name, true);
        if (only_stale && (!object.exists || !object.report.is_mproc)) continue;
        const std::string why_not = refusal(object);
        if (!why_not.empty()) {
            if (only_stale) continue;
            std::fprintf(stderr, "mproc rm: %s not removed: %s\n", printable(name).c_str(), why_not.c_str());
            status = kExitFailed;
            continue;
        }
        if (dry_run) {
            std::printf("would remove %s\n", printable(name).c_str());
            continue;
        }
        if (::unlink(path_of(name).c_str()) != 0 && errno != ENOENT) {
            std::fprintf(stderr, "mproc rm: %s: unlink: %s\n", printable(name).c_str(), std::strerror(errno));
            status = kExitFailed;
            continue;
        }
        std::printf("removed %s\n", printable(name).c_str());
    }
    return status;
}

// command line -------------------------------------------------------------------------------------------

constexpr const char* kUsage =
    "usage: mproc ls [--json]\n"
    "       mproc show NAME [--json]\n"
    "       mproc rm NAME...\n"
    "       mproc rm --stale [--dry-run]\n"
    "       mproc COMMAND --help\n"
    "Lists, inspects and removes named mproc objects in /dev/shm. Exit codes: 0 done, 1 an object was\n"
    "missing, invalid or refused, 2 usage error.\n";
constexpr const char* kLsHelp =
    "usage: mproc ls [--json]\n"
    "Lists every mproc object in /dev/shm: name, kind, size, layout version, creator pid and whether it is\n"
    "alive (by pidfd and start time), age, and whether its header and payload validate (invalid ones with\n"
    "the reason). Files that are not mproc objects are skipped. Reads copies; takes no lock.\n"
    "--json: {\"schema\":1,\"objects\":[{name, kind, valid, reason, size, layout_version, creator_pid,\n"
    "creator_alive, age_seconds}, ...]}, one object a line. Exit: 0.\n";
constexpr const char* kShowHelp =
    "usage: mproc show NAME [--json]\n"
    "Shows one object: its header, the processes that map or hold it, and the state its kind records\n"
    "(lock owner and whether it is alive or died holding it, consistency, sleepers; semaphore value; event\n"
    "set; condition waiters; barrier parties, waiting, broken; queue kind, capacity, depth, closed,\n"
    "unfinished tasks; value/array element size and length). Reads a copy; takes no lock.\n"
    "--json: {\"schema\":1, name, kind, valid, reason, size, layout_version, payload_size, creator_pid,\n"
    "creator_alive, users, state:{...}} (docs/operators.md). Exit: 0; 1 missing, not mproc, or invalid.\n";
constexpr const char* kRmHelp =
    "usage: mproc rm NAME...\n"
    "       mproc rm --stale [--dry-run]\n"
    "Unlinks mproc objects whose creator is dead and that no process maps or holds open; refuses any other\n"
    "(exit 1, with the reason). --stale: every such object in /dev/shm. --dry-run: print what would be\n"
    "removed, remove nothing. Exit: 0; 1 an object was missing or refused; 2 usage error.\n";

int usage_error(const std::string& message) {
    std::fprintf(stderr, "mproc: %s\n%s", message.c_str(), kUsage);
    return kExitUsage;
}

int run(const std::vector<std::string>& args) {
    if (args.empty()) return usage_error("no command");
    const std::string& command = args[0];
    const std::vector<std::string> rest(args.begin() + 1, args.end());
    const bool help = std::find(rest.begin(), rest.end(), "--help") != rest.end();
    if (command == "--help" || command == "help") {
        std::fputs(kUsage, stdout);
        return kExitOk;
    }
    if (command == "ls") {
        if (help) return std::fputs(kLsHelp, stdout), kExitOk;
        bool json = false;
        for (const std::string& arg : rest) {
            if (arg == "--json") json = true;
            else return usage_error("ls: unexpected argument '" + printable(arg) + "'");
        }
        return command_ls(json);
    }
    if (command == "show") {
        if (help) return std::fputs(kShowHelp, stdout), kExitOk;
        bool json = false;
        std::optional<std::string> name;
        for (const std::string& arg : rest) {
            if (arg == "--json") json = true;
            else if (!name && arg.rfind("--", 0) != 0) name = arg;
            else return usage_error("show: unexpected argument '" + printable(arg) + "'");
        }
        if (!name) return usage_error("show: no NAME");
        const std::optional<std::string> normal = normalise_name(*name);
        if (!normal) return usage_error("show: '" + printable(*name) + "' cannot name an object in /dev/shm");
        return command_show(*normal, json);
    }
    if (command == "rm") {
        if (help) return std::fputs(kRmHelp, stdout), kExitOk;
        bool stale = false;
        bool dry_run = false;
        std::vector<std::string> names;
        for (const std::string& arg : rest) {
            if (arg == "--stale") stale = true;
            else if (arg == "--dry-run") dry_run = true;
            else if (arg.rfind("--", 0) == 0) return usage_error("rm: unknown option '" + printable(arg) + "'");
            else {
                const std::optional<std::string> normal = normalise_name(arg);
                if (!normal) return usage_error("rm: '" + printable(arg) + "' cannot name an object in /dev/shm");
                names.push_back(*normal);
            }
        }
        if (stale && !names.empty()) return usage_error("rm: --stale takes no NAME");
        if (!stale && names.empty()) return usage_error("rm: no NAME (or --stale)");
        if (dry_run && !stale) return usage_error("rm: --dry-run goes with --stale");
        return remove_objects(stale ? names_in_shm() : names, dry_run, stale);
    }
    return usage_error("unknown command '" + printable(command) + "'");
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(std::vector<std::string>(argv + 1, argv + argc));
    } catch (const std::exception& error) {
        std::fprintf(stderr, "mproc: %s\n", error.what());
        return kExitFailed;
    }
}
