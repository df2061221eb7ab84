// mproc/unique_fd.hpp — UniqueFd, the owner of one file descriptor: what FdConnection::recv_handle() returns,
// so a descriptor that arrived from another process is closed on every path unless its receiver takes it.
//
// Guarantees: the destructor (and reset()) closes the descriptor it owns, once; release() hands it over and
// leaves -1. Move-only; a moved-from UniqueFd owns nothing (get() is -1). close(2) errors are ignored, as
// after close(2) the descriptor is gone whatever it reports (Linux).
// Costs: one close(2) on destruction or reset() of an owning UniqueFd; nothing else.
#pragma once

#include <utility>

#include <unistd.h>

namespace mproc {

class UniqueFd {
public:
    UniqueFd() noexcept = default;
    // Takes ownership of fd (-1: owns nothing).
    explicit UniqueFd(int fd) noexcept : fd_(fd) {}
    UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept {
        if (this != &other) reset(std::exchange(other.fd_, -1));
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    int get() const noexcept { return fd_; }
    bool valid() const noexcept { return fd_ >= 0; }
    explicit operator bool() const noexcept { return valid(); }
    // The descriptor, no longer owned: the caller closes it.
    [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
    // Closes what it owns and takes fd instead.
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0 && fd_ != fd) ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

}  // namespace mproc
