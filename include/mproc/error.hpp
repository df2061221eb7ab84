// mproc/error.hpp — the one exception hierarchy of mproc.
//
// Contract: every error the library reports is an mproc::Error (a std::runtime_error). Errors that come
// from a system call are SystemError and keep errno in code(). Conditions that Python's multiprocessing
// reports as exceptions have named subclasses here with the same meaning; conditions Python reports as a
// False return value (a timed-out acquire, join or wait) are return values in mproc, never exceptions.
// Messages name the object, the operation and the cause: "shared memory 'jobs': header version 3, expected 2".
// Cost: only on error paths; nothing here is touched by a fast path.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace mproc {

class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A failed system call; code() is the errno it failed with.
class SystemError : public Error {
public:
    SystemError(const std::string& what, int error_number);
    int code() const noexcept { return error_number_; }

private:
    int error_number_;
};

// A call made in a state that does not allow it (Process::start twice, join before start): Python raises
// AssertionError or ValueError for these.
class StateError : public Error {
public:
    using Error::Error;
};

// An argument outside what the call accepts (an invalid segment name, a zero size, a negative timeout).
class ValueError : public Error {
public:
    using Error::Error;
};

// A shared-memory object failed validation when opened or attached: missing, truncated, wrong magic,
// another layout version, another kind, sizes that disagree, or never published by its creator.
class InvalidObject : public Error {
public:
    using Error::Error;
};

// The previous owner of a robust lock (Lock, RLock) died while holding it. Thrown by the blocking
// acquire calls *after* the lock was acquired: the catcher owns the lock, must repair the data it guards,
// call make_consistent(), then unlock(). Unlocking without make_consistent() makes the lock unrecoverable.
// Python has no counterpart (its locks are not robust); pthread reports it as EOWNERDEAD.
class OwnerDied : public Error {
public:
    using Error::Error;
};

// A robust lock whose previous owner died and that was then released without make_consistent(): it can
// never be acquired again, and every acquire attempt reports this. pthread reports it as ENOTRECOVERABLE.
class NotRecoverable : public Error {
public:
    using Error::Error;
};

// A Barrier that is broken (Python's threading.BrokenBarrierError): abort() was called, a participant
// timed out or died inside wait(), the action threw, or reset() ended the generation a waiter was in.
// Thrown by Barrier::wait() to every participant of the broken generation and to every later caller
// until reset().
class BrokenBarrier : public Error {
public:
    using Error::Error;
};

// Python's queue.Empty: a non-blocking get() found the queue empty, or a blocking one timed out.
class Empty : public Error {
public:
    using Error::Error;
};

// Python's queue.Full: a non-blocking put() found the queue full, or a blocking one timed out.
class Full : public Error {
public:
    using Error::Error;
};

// A queue that was close()d: put() refuses (Python raises ValueError), and get() on a closed queue that is
// drained reports this instead of blocking forever.
class Closed : public Error {
public:
    using Error::Error;
};

// Python's BrokenPipeError on a Connection: a send found the peer's end closed (EPIPE, ECONNRESET). The
// sender is not killed by SIGPIPE; this is thrown instead. code() is the errno.
class BrokenPipe : public SystemError {
public:
    using SystemError::SystemError;
};

// Python's multiprocessing.BufferTooShort: recv_bytes_into() received a message longer than the buffer
// given. The message was consumed from the connection and is handed over whole in message().
class BufferTooShort : public Error {
public:
    BufferTooShort(const std::string& what, std::vector<std::byte> message)
        : Error(what), message_(std::move(message)) {}
    const std::vector<std::byte>& message() const noexcept { return message_; }

private:
    std::vector<std::byte> message_;
};

// A message that does not decode as the type asked for (mproc/codec.hpp): truncated, a wrong tag, a length
// larger than the bytes left, nesting deeper than the codec allows, bytes left over. type() names the type
// being decoded, offset() the byte of the message where the fault is, expected() what should have been there.
class DecodeError : public Error {
public:
    DecodeError(std::string type, std::size_t offset, std::string expected)
        : Error("decode " + type + " at byte " + std::to_string(offset) + ": expected " + expected),
          type_(std::move(type)), offset_(offset), expected_(std::move(expected)) {}
    const std::string& type() const noexcept { return type_; }
    std::size_t offset() const noexcept { return offset_; }
    const std::string& expected() const noexcept { return expected_; }

private:
    std::string type_;
    std::size_t offset_;
    std::string expected_;
};

// Throws SystemError for `what`, with the current errno.
[[noreturn]] void throw_system_error(const std::string& what);
[[noreturn]] void throw_system_error(const std::string& what, int error_number);

}  // namespace mproc
