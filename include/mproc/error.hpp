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

// Python's multiprocessing.TimeoutError: AsyncResult::get() or IMapIterator::next() passed its timeout
// before the result was ready (the task goes on; a later get() may still return it).
class TimeoutError : public Error {
public:
    using Error::Error;
};

// A Pool task's failure (mproc/pool.hpp); task() is its index among the inputs of the call (0 for apply).
class TaskError : public Error {
public:
    TaskError(const std::string& what, std::size_t task) : Error(what), task_(task) {}
    std::size_t task() const noexcept { return task_; }

private:
    std::size_t task_;
};

// A Pool task threw (Python's RemoteError with its RemoteTraceback): the exception's type name and what().
class RemoteError : public TaskError {
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
class WorkerDied : public TaskError {
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
class TimedOut : public TaskError {
public:
    TimedOut(const std::string& what, std::size_t task, int pid) : TaskError(what, task), pid_(pid) {}
    int pid() const noexcept { return pid_; }

private:
    int pid_;
};

// Throws SystemError for `what`, with the current errno.
[[noreturn]] void throw_system_error(const std::string& what);
[[noreturn]] void throw_system_error(const std::string& what, int error_number);

}  // namespace mproc
