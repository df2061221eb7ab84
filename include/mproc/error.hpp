// mproc/error.hpp — the one exception hierarchy of mproc.
//
// Contract: every error the library reports is an mproc::Error and also a std::runtime_error: each concrete
// class derives from one standard exception (std::runtime_error, or std::system_error for SystemError) and
// from the interface mproc::Error, so `catch (const mproc::Error&)`, `catch (const std::runtime_error&)` and
// `catch (const std::exception&)` all catch it, and there is one std::exception inside, never two. Errors
// that come from a system call are SystemError, a std::system_error whose code() is the errno in the system
// category (so it compares equal to std::errc values). Conditions that Python's multiprocessing reports as
// exceptions have named subclasses here with the same meaning; conditions Python reports as a False return
// value (a timed-out acquire, join or wait) are return values in mproc, never exceptions.
// Messages name the object, the operation and the cause: "shared memory 'jobs': header version 3, expected 2".
// A new error class derives from ErrorOf<std::runtime_error> (or from one of the classes below).
// Cost: only on error paths; nothing here is touched by a fast path.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "mproc/export.hpp"

namespace mproc {

// What every mproc exception is; catch it by reference. Not itself a std::exception (the concrete classes
// are), so that SystemError can be a std::system_error without holding two std::exception subobjects.
class MPROC_API Error {
public:
    virtual const char* what() const noexcept = 0;

protected:
    Error() = default;
    Error(const Error&) = default;
    Error& operator=(const Error&) = default;
    virtual ~Error();
};

// A concrete mproc error on the standard exception StdBase, whose constructors it takes over.
template <class StdBase>
class MPROC_API ErrorOf : public StdBase, public Error {
public:
    using StdBase::StdBase;
    const char* what() const noexcept override { return StdBase::what(); }
};

// A failed system call: code() is std::error_code(errno, std::system_category()); what() is
// "<what>: <strerror(errno)>".
class MPROC_API SystemError : public ErrorOf<std::system_error> {
public:
    SystemError(const std::string& what, int error_number);
    int error_number() const noexcept { return code().value(); }
};

// A call made in a state that does not allow it (Process::start twice, join before start): Python raises
// AssertionError or ValueError for these.
class MPROC_API StateError : public ErrorOf<std::runtime_error> {
public:
    using ErrorOf::ErrorOf;
};

// An argument outside what the call accepts (an invalid segment name, a zero size, a negative timeout).
class MPROC_API ValueError : public ErrorOf<std::runtime_error> {
public:
    using ErrorOf::ErrorOf;
};

// A shared-memory object failed validation when opened or attached: missing, truncated, wrong magic,
// another layout version, another kind, sizes that disagree, or never published by its creator.
class MPROC_API InvalidObject : public ErrorOf<std::runtime_error> {
public:
    using ErrorOf::ErrorOf;
};

// The previous owner of a robust lock (Lock, RLock) died while holding it. Thrown by the blocking
// acquire calls *after* the lock was acquired: the catcher owns the lock, must repair the data it guards,
// call make_consistent(), then unlock(). Unlocking without make_consistent() makes the lock unrecoverable.
// Python has no counterpart (its locks are not robust); pthread reports it as EOWNERDEAD.
class MPROC_API OwnerDied : public ErrorOf<std::runtime_error> {
public:
    using ErrorOf::ErrorOf;
};

// A robust lock whose previous owner died and that was then released without make_consistent(): it can
// never be acquired again, and every acquire attempt reports this. pthread reports it as ENOTRECOVERABLE.
class MPROC_API NotRecoverable : public ErrorOf<std::runtime_error> {
public:
    using ErrorOf::ErrorOf;
};

// A Barrier that is broken (Python's threading.BrokenBarrierError): abort() was called, a participant
// timed out or died inside wait(), the action threw, or reset() ended the generation a waiter was in.
// Thrown by Barrier::wait() to every participant of the broken generation and to every later caller
// until reset().
class MPROC_API BrokenBarrier : public ErrorOf<std::runtime_error> {
public:
    using ErrorOf::ErrorOf;
};

// Python's queue.Empty: a non-blocking get() found the queue empty, or a blocking one timed out.
class MPROC_API Empty : public ErrorOf<std::runtime_error> {
public:
    using ErrorOf::ErrorOf;
};

// Python's queue.Full: a non-blocking put() found the queue full, or a blocking one timed out.
class MPROC_API Full : public ErrorOf<std::runtime_error> {
public:
    using ErrorOf::ErrorOf;
};

// A queue that was close()d: put() refuses (Python raises ValueError), and get() on a closed queue that is
// drained reports this instead of blocking forever.
class MPROC_API Closed : public ErrorOf<std::runtime_error> {
public:
    using ErrorOf::ErrorOf;
};

// Python's BrokenPipeError on a Connection: a send found the peer's end closed (EPIPE, ECONNRESET). The
// sender is not killed by SIGPIPE; this is thrown instead. code() is the errno.
class MPROC_API BrokenPipe : public SystemError {
public:
    using SystemError::SystemError;
};

// Python's multiprocessing.BufferTooShort: recv_bytes_into() received a message longer than the buffer
// given. The message was consumed from the connection and is handed over whole in message().
class MPROC_API BufferTooShort : public ErrorOf<std::runtime_error> {
public:
    BufferTooShort(const std::string& what, std::vector<std::byte> message)
        : ErrorOf(what), message_(std::move(message)) {}
    const std::vector<std::byte>& message() const noexcept { return message_; }

private:
    std::vector<std::byte> message_;
};

// Python's multiprocessing.AuthenticationError: the authkey handshake of a Listener/Client connection failed —
// the peer's digest was wrong (the keys differ), the peer refused ours, it broke the protocol (a frame that is
// not a challenge, one longer than the handshake allows, an unknown digest), closed the connection, or stalled
// past the handshake timeout. The connection is closed; nothing after the handshake was read or written.
class MPROC_API AuthenticationError : public ErrorOf<std::runtime_error> {
public:
    using ErrorOf::ErrorOf;
};

// Bytes that do not decode (mproc/codec.hpp, mproc/pickle.hpp, a Pool's result frames): a truncated or
// malformed message, a length beyond the bytes present, nesting past the decoder's limit, a type other than
// the one asked for, bytes left over. The codec's form names the type being decoded (type()), the byte of
// the message where the fault is (offset()) and what should have been there (expected()); the pickle
// decoder's message names the opcode and offset itself ("pickle: BINBYTES8 (0x8e) at offset 2: needs
// 1152921504606846976 bytes of argument, 1 left"), and its type() and expected() are empty.
class MPROC_API DecodeError : public ErrorOf<std::runtime_error> {
public:
    explicit DecodeError(const std::string& what) : ErrorOf(what) {}
    DecodeError(std::string type, std::size_t offset, std::string expected)
        : ErrorOf("decode " + type + " at byte " + std::to_string(offset) + ": expected " + expected),
          type_(std::move(type)), offset_(offset), expected_(std::move(expected)) {}
    const std::string& type() const noexcept { return type_; }
    std::size_t offset() const noexcept { return offset_; }
    const std::string& expected() const noexcept { return expected_; }

private:
    std::string type_;
    std::size_t offset_ = 0;
    std::string expected_;
};

// Python's multiprocessing.TimeoutError: AsyncResult::get() or IMapIterator::next() passed its timeout
// before the result was ready (the task goes on; a later get() may still return it).
class MPROC_API TimeoutError : public ErrorOf<std::runtime_error> {
public:
    using ErrorOf::ErrorOf;
};

// A Pool task's failure (mproc/pool.hpp); task() is its index among the inputs of the call (0 for apply).
class MPROC_API TaskError : public ErrorOf<std::runtime_error> {
public:
    TaskError(const std::string& what, std::size_t task) : ErrorOf(what), task_(task) {}
    std::size_t task() const noexcept { return task_; }

private:
    std::size_t task_;
};

// A Pool task threw (Python's RemoteError with its RemoteTraceback): the exception's type name and what().
class MPROC_API RemoteError : public TaskError {
public:
    RemoteError(const std::string& what, std::size_t task, std::string type, std::string text)
        : TaskError(what, task), type_(std::move(type)), text_(std::move(text)) {}
    const std::string& type() const noexcept { return type_; }
    const std::string& text() const noexcept { return text_; }

private:
    std::string type_;
    std::string text_;
};

// A Pool worker ended while running the task (SIGKILL, a crash, _exit): exit_status() is Python's
// exitcode (-N for signal N).
class MPROC_API WorkerDied : public TaskError {
public:
    WorkerDied(const std::string& what, std::size_t task, int pid, int exit_status)
        : TaskError(what, task), pid_(pid), exit_status_(exit_status) {}
    int pid() const noexcept { return pid_; }
    int exit_status() const noexcept { return exit_status_; }

private:
    int pid_;
    int exit_status_;
};

// A Pool task ran longer than the pool's task_timeout: its worker was killed.
class MPROC_API TimedOut : public TaskError {
public:
    TimedOut(const std::string& what, std::size_t task, int pid) : TaskError(what, task), pid_(pid) {}
    int pid() const noexcept { return pid_; }

private:
    int pid_;
};

// Throws SystemError for `what`, with the current errno.
[[noreturn]] MPROC_API void throw_system_error(const std::string& what);
[[noreturn]] MPROC_API void throw_system_error(const std::string& what, int error_number);

}  // namespace mproc
