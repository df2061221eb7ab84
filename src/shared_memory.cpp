#include "mproc/shared_memory.hpp"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <limits>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "deadline.hpp"
#include "mproc/error.hpp"
#include "mproc/kill_point.hpp"
#include "mproc/resource_tracker.hpp"
#include "mproc_config.h"
#include "object_header_wait.hpp"

namespace mproc {
namespace {

// Owns a file descriptor until release().
class FileDescriptor {
public:
    explicit FileDescriptor(int fd) noexcept : fd_(fd) {}
    FileDescriptor(const FileDescriptor&) = delete;
    FileDescriptor& operator=(const FileDescriptor&) = delete;
    ~FileDescriptor() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const noexcept { return fd_; }
    bool valid() const noexcept { return fd_ >= 0; }
    int release() noexcept { return std::exchange(fd_, -1); }

private:
    int fd_;
};

// Owns a mapping until release().
class Mapping {
public:
    Mapping(std::byte* base, std::size_t size) noexcept : base_(base), size_(size) {}
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    ~Mapping() {
        if (base_ != nullptr) ::munmap(base_, size_);
    }
    std::span<std::byte> span() const noexcept { return {base_, size_}; }
    std::byte* release() noexcept { return std::exchange(base_, nullptr); }

private:
    std::byte* base_;
    std::size_t size_;
};

// Removes a name the creator made, unless the creation completed.
class UnlinkUnlessPublished {
public:
    explicit UnlinkUnlessPublished(const std::string& name) noexcept : name_(&name) {}
    UnlinkUnlessPublished(const UnlinkUnlessPublished&) = delete;
    UnlinkUnlessPublished& operator=(const UnlinkUnlessPublished&) = delete;
    ~UnlinkUnlessPublished() { unlink_now(); }
    void unlink_now() noexcept {
        if (name_ != nullptr) ::shm_unlink(name_->c_str());
        name_ = nullptr;
    }
    void dismiss() noexcept { name_ = nullptr; }

private:
    const std::string* name_;
};

std::string fd_label(ObjectKind kind, int fd) {
    return std::string(object_kind_name(kind)) + " (fd " + std::to_string(fd) + ")";
}

std::string anonymous_label(ObjectKind kind) { return "anonymous " + std::string(object_kind_name(kind)); }

// "/name" from "/name" or "name"; ValueError for anything shm_open would reject or resolve elsewhere.
std::string normalise_name(std::string_view name, ObjectKind kind) {
    auto reject = [&](const std::string& cause) {
        throw ValueError(object_label(kind, name) + ": invalid name: " + cause);
    };
    std::string_view body = name;
    if (!body.empty() && body.front() == '/') body.remove_prefix(1);
    if (body.empty()) reject("empty (a name is '/' followed by 1 to " + std::to_string(NAME_MAX) + " characters)");
    if (body.find('/') != std::string_view::npos) reject("a '/' after the leading one");
    if (body.find('\0') != std::string_view::npos) reject("a NUL character");
    if (body == "." || body == "..") reject("'.' and '..' name directories");
    if (body.size() > NAME_MAX)
        reject(std::to_string(body.size()) + " characters, more than NAME_MAX (" + std::to_string(NAME_MAX) + ")");
    return "/" + std::string(body);
}

// Header plus payload, as a size a file and a mapping can have.
std::size_t checked_total_size(std::size_t payload_size, const std::string& label) {
    if (payload_size == 0) throw ValueError(label + ": size 0 (a segment holds at least one byte)");
    constexpr std::uint64_t kLargestFile = static_cast<std::uint64_t>(std::numeric_limits<off_t>::max());
    if (payload_size > kLargestFile - kObjectHeaderSize || payload_size > SIZE_MAX - kObjectHeaderSize)
        throw ValueError(label + ": size " + std::to_string(payload_size) + " is larger than a file can be");
    return static_cast<std::size_t>(object_total_size(payload_size));
}

Mapping map_shared(int fd, std::size_t size, const std::string& label, const char* operation) {
    void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) throw_system_error(label + ": " + operation + ": mmap of " + std::to_string(size) + " bytes");
    return Mapping(static_cast<std::byte*>(base), size);
}

std::string milliseconds_text(const detail::Deadline& deadline) {
    return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(deadline.timeout()).count()) + " ms";
}

// The opener's first wait: a creator between shm_open and ftruncate has left the file empty. ftruncate
// changes the size from 0 to the full object size in one step, so a size between 0 and the header size is
// never a creator at work: it is reported at once as truncated.
std::size_t await_sized_file(int fd, const std::string& label, const detail::Deadline& deadline) {
    for (;;) {
        struct stat status {};
        if (::fstat(fd, &status) != 0) throw_system_error(label + ": open: fstat");
        const auto file_size = static_cast<std::uintmax_t>(status.st_size);
        if (file_size >= kObjectHeaderSize) {
            if (file_size > SIZE_MAX)
                throw InvalidObject(label + ": the file holds " + std::to_string(file_size) +
                                    " bytes, more than this process can map");
            return static_cast<std::size_t>(file_size);
        }
        if (file_size > 0)
            throw InvalidObject(label + ": truncated: the file holds " + std::to_string(file_size) +
                                " bytes, less than the " + std::to_string(kObjectHeaderSize) + "-byte object header");
        if (deadline.passed())
            throw InvalidObject(label + ": not published within " + milliseconds_text(deadline) +
                                ": the file is still empty (its creator died before sizing it, or is still creating it)");
        const timespec pause =
            detail::Deadline::to_timespec(std::min<std::chrono::nanoseconds>(deadline.remaining(), std::chrono::milliseconds(1)));
        ::nanosleep(&pause, nullptr);
    }
}

detail::Deadline deadline_from(std::chrono::milliseconds publish_timeout, const std::string& label) {
    if (publish_timeout.count() < 0)
        throw ValueError(label + ": open: negative publish timeout (" + std::to_string(publish_timeout.count()) + " ms)");
    return detail::Deadline::after(publish_timeout);
}

// An fd given to attach may come from another process: it must be a memory file that nobody can shrink under
// our mapping (an access past a shrunk end faults with SIGBUS). Every anonymous mproc object is such a memfd.
void require_sealed_memory_file(int fd, const std::string& label) {
    struct stat status {};
    if (::fstat(fd, &status) != 0) throw_system_error(label + ": attach: fstat");
    if (!S_ISREG(status.st_mode))
        throw InvalidObject(label + ": attach: not a memory file (a pipe, socket, directory or device); "
                                    "expected the memfd of an anonymous object");
    const int seals = ::fcntl(fd, F_GET_SEALS);
    if (seals < 0)
        throw InvalidObject(label + ": attach: the file cannot be sealed (" + std::string(errno == EINVAL ? "not a memfd" : "F_GET_SEALS failed") +
                            "); expected the memfd of an anonymous object");
    if ((seals & F_SEAL_SHRINK) == 0)
        throw InvalidObject(label + ": attach: the memfd is not sealed against shrinking (its other holders could "
                                    "truncate it under the mapping); anonymous objects are");
}

int create_memfd(const std::string& label) {
    constexpr unsigned kFlags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
#if MPROC_HAVE_MEMFD_CREATE
    const int fd = ::memfd_create("mproc-anonymous", kFlags);
#else
    const int fd = static_cast<int>(::syscall(SYS_memfd_create, "mproc-anonymous", kFlags));
#endif
    if (fd < 0) throw_system_error(label + ": create: memfd_create");
    return fd;
}

}  // namespace

struct detail::SharedMemoryAccess {
    static SharedMemory adopt(std::string name, Mapping& mapping, std::size_t mapping_size, int fd_to_keep,
                              const ObjectHeaderFields& fields) noexcept {
        SharedMemory segment;
        segment.name_ = std::move(name);
        segment.mapping_size_ = mapping_size;
        segment.mapping_ = mapping.release();
        // Only the validated copy decides where the payload is and how long: the header is not read again.
        segment.payload_ = segment.mapping_ + fields.payload_offset;
        segment.payload_size_ = static_cast<std::size_t>(fields.payload_size);
        segment.fd_ = fd_to_keep;
        segment.kind_ = fields.kind;
        segment.layout_version_ = fields.layout_version;
        return segment;
    }

    static ObjectHeaderFields creator_fields(ObjectKind kind, std::uint32_t layout_version, std::size_t payload_size,
                                             std::size_t total_size) noexcept {
        return ObjectHeaderFields{
            .kind = kind,
            .layout_version = layout_version,
            .payload_offset = kObjectHeaderSize,
            .payload_size = payload_size,
            .total_size = total_size,
            .creator_pid = ::getpid(),
        };
    }

    // The opener's half of the handshake on an fd it owns: wait for the size, map, wait for publication,
    // validate.
    static SharedMemory open_fd(FileDescriptor& fd, std::string name, const std::string& label, ObjectKind kind,
                                std::uint32_t layout_version, const Deadline& deadline, bool keep_fd) {
        const std::size_t file_size = await_sized_file(fd.get(), label, deadline);
        Mapping mapping = map_shared(fd.get(), file_size, label, "open");
        const ObjectHeaderFields fields = await_object_header_until(mapping.span(), label, kind, layout_version, deadline);
        return adopt(std::move(name), mapping, file_size, keep_fd ? fd.release() : -1, fields);
    }
};

SharedMemory SharedMemory::anonymous(std::size_t size) {
    return anonymous_object(ObjectKind::shared_memory, current_layout_version(ObjectKind::shared_memory), size, {});
}

SharedMemory SharedMemory::create(std::string_view name, std::size_t size, mode_t mode) {
    return create_object(name, ObjectKind::shared_memory, current_layout_version(ObjectKind::shared_memory), size,
                         mode, {});
}

SharedMemory SharedMemory::open(std::string_view name, std::chrono::milliseconds publish_timeout) {
    return open_object(name, ObjectKind::shared_memory, current_layout_version(ObjectKind::shared_memory),
                       publish_timeout);
}

SharedMemory SharedMemory::attach(int fd, std::chrono::milliseconds publish_timeout) {
    return attach_object(fd, ObjectKind::shared_memory, current_layout_version(ObjectKind::shared_memory),
                         publish_timeout);
}

SharedMemory SharedMemory::create_object(std::string_view name, ObjectKind kind, std::uint32_t layout_version,
                                         std::size_t payload_size, mode_t mode, const Initialiser& initialise) {
    const std::string path = normalise_name(name, kind);
    const std::string label = object_label(kind, path);
    const std::size_t total_size = checked_total_size(payload_size, label);

    FileDescriptor fd(::shm_open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, mode));
    if (!fd.valid()) throw_system_error(label + ": create: shm_open(O_CREAT|O_EXCL)");
    // Tracked from the moment the name exists: a creator killed from here on leaves nothing behind.
    detail::resource_tracker_note('R', path.c_str());
    MPROC_KILL_POINT(segment_create, 0);  // the name exists, the file is empty
    // The name is ours from here: any failure before publication removes it again.
    UnlinkUnlessPublished unlink_guard(path);
    if (::ftruncate(fd.get(), static_cast<off_t>(total_size)) != 0)
        throw_system_error(label + ": create: ftruncate to " + std::to_string(total_size) + " bytes");
    MPROC_KILL_POINT(segment_create, 1);  // sized, all zero: no header yet
    Mapping mapping = map_shared(fd.get(), total_size, label, "create");
    place_object_header(mapping.span(), kind, layout_version, payload_size);
    MPROC_KILL_POINT(segment_create, 3);  // a complete header, unpublished; the payload not initialised
    if (initialise) {
        try {
            initialise(mapping.span().subspan(kObjectHeaderSize, payload_size));
        } catch (...) {
            // Unlink first so no new opener finds the name, then fail the openers already waiting.
            unlink_guard.unlink_now();
            abandon_object_header(mapping.span());
            throw;
        }
    }
    MPROC_KILL_POINT(segment_create, 4);  // initialised, unpublished
    publish_object_header(mapping.span());
    MPROC_KILL_POINT(segment_create, 6);  // published (openers woken), the creator's handle not yet made
    unlink_guard.dismiss();
    return detail::SharedMemoryAccess::adopt(path, mapping, total_size, -1,
                                             detail::SharedMemoryAccess::creator_fields(kind, layout_version,
                                                                                        payload_size, total_size));
}

SharedMemory SharedMemory::open_object(std::string_view name, ObjectKind kind, std::uint32_t layout_version,
                                       std::chrono::milliseconds publish_timeout) {
    const std::string path = normalise_name(name, kind);
    const std::string label = object_label(kind, path);
    const detail::Deadline deadline = deadline_from(publish_timeout, label);
    FileDescriptor fd(::shm_open(path.c_str(), O_RDWR | O_CLOEXEC, 0));
    if (!fd.valid()) throw_system_error(label + ": open: shm_open");
    return detail::SharedMemoryAccess::open_fd(fd, path, label, kind, layout_version, deadline, false);
}

SharedMemory SharedMemory::anonymous_object(ObjectKind kind, std::uint32_t layout_version, std::size_t payload_size,
                                            const Initialiser& initialise) {
    const std::string label = anonymous_label(kind);
    const std::size_t total_size = checked_total_size(payload_size, label);
    FileDescriptor fd(create_memfd(label));
    if (::ftruncate(fd.get(), static_cast<off_t>(total_size)) != 0)
        throw_system_error(label + ": create: ftruncate to " + std::to_string(total_size) + " bytes");
    // Nobody, including a process the fd is passed to, can shrink the file under the mappings (SIGBUS) or
    // grow it past what the header says.
    if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
        throw_system_error(label + ": create: sealing the memfd");
    Mapping mapping = map_shared(fd.get(), total_size, label, "create");
    place_object_header(mapping.span(), kind, layout_version, payload_size);
    if (initialise) initialise(mapping.span().subspan(kObjectHeaderSize, payload_size));
    publish_object_header(mapping.span());
    return detail::SharedMemoryAccess::adopt(std::string(), mapping, total_size, fd.release(),
                                             detail::SharedMemoryAccess::creator_fields(kind, layout_version,
                                                                                        payload_size, total_size));
}

SharedMemory SharedMemory::attach_object(int fd, ObjectKind kind, std::uint32_t layout_version,
                                         std::chrono::milliseconds publish_timeout) {
    const std::string label = fd_label(kind, fd);
    const detail::Deadline deadline = deadline_from(publish_timeout, label);
    FileDescriptor own_fd(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (!own_fd.valid()) throw_system_error(label + ": attach: dup");
    require_sealed_memory_file(own_fd.get(), label);
    return detail::SharedMemoryAccess::open_fd(own_fd, std::string(), label, kind, layout_version, deadline, true);
}

SharedMemory::SharedMemory(SharedMemory&& other) noexcept
    : name_(std::move(other.name_)),
      mapping_(std::exchange(other.mapping_, nullptr)),
      mapping_size_(std::exchange(other.mapping_size_, 0)),
      payload_(std::exchange(other.payload_, nullptr)),
      payload_size_(std::exchange(other.payload_size_, 0)),
      fd_(std::exchange(other.fd_, -1)),
      kind_(other.kind_),
      layout_version_(std::exchange(other.layout_version_, 0)) {
    other.name_.clear();
}

SharedMemory& SharedMemory::operator=(SharedMemory&& other) noexcept {
    if (this != &other) {
        release();
        name_ = std::move(other.name_);
        other.name_.clear();
        mapping_ = std::exchange(other.mapping_, nullptr);
        mapping_size_ = std::exchange(other.mapping_size_, 0);
        payload_ = std::exchange(other.payload_, nullptr);
        payload_size_ = std::exchange(other.payload_size_, 0);
        fd_ = std::exchange(other.fd_, -1);
        kind_ = other.kind_;
        layout_version_ = std::exchange(other.layout_version_, 0);
    }
    return *this;
}

SharedMemory::~SharedMemory() { release(); }

void SharedMemory::release() noexcept {
    if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
    if (fd_ >= 0) ::close(fd_);
    name_.clear();
    mapping_ = nullptr;
    mapping_size_ = 0;
    payload_ = nullptr;
    payload_size_ = 0;
    fd_ = -1;
    layout_version_ = 0;
}

void SharedMemory::unlink() {
    if (mapping_ == nullptr) throw StateError(std::string(object_kind_name(kind_)) + ": unlink on a moved-from handle");
    if (name_.empty())
        throw StateError(std::string(object_kind_name(kind_)) + ": unlink: the segment has no name (it is anonymous, or attached by fd)");
    if (::shm_unlink(name_.c_str()) != 0) throw_system_error(object_label(kind_, name_) + ": unlink: shm_unlink");
    detail::resource_tracker_note('U', name_.c_str());
}

}  // namespace mproc
