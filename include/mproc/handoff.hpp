// mproc/handoff.hpp — handing an anonymous object to an unrelated process in one call: send_object(conn,
// lock) in one process, recv_object<Lock>(conn) in the other, over an FdConnection on an AF_UNIX stream
// socket (a Listener/Client connection over a Unix address, fd_pipe(), a socketpair).
//
// Defines: send_object, recv_object, and HandoffName<H> (the name each handle type travels under). A Pipe
// end (PipeConnection of an anonymous Pipe) travels too, as "pipe end 0|1": the receiver holds that end.
//
// Wire: one framed message "mproc.handoff/1 <name>" (name: "lock", "queue", ...: HandoffName<H>), then the
// object's memfd as a handle (FdConnection::send_handle). The receiver duplicates nothing: it maps the
// received descriptor through H::from_fd, which validates the header exactly as a named open does (kind,
// layout version, sizes; Queue<T> its slot size, Value<T>/Array<T> their T), then closes it (the handle
// keeps its own duplicate).
//
// Guarantees
// - The receiver gets a validated handle on the same object, or an exception; no descriptor leaks on any
//   path: a wrong name (recv_object<Lock> meeting a queue) reads and closes the descriptor that follows and
//   throws InvalidObject naming both kinds; a message that is not a hand-off throws InvalidObject (the
//   message is consumed); a handle where the hand-off message was expected throws SystemError(EPROTO)
//   (FdConnection's rule; its descriptors closed).
// - Only anonymous objects (and ones made by from_fd) have a descriptor: send_object of a named object
//   throws ValueError (open it by name instead), as does a moved-from handle.
// - The object lives while any process maps it or holds its descriptor: the sender may drop its handle as
//   soon as send_object returns (the descriptor is in flight in the socket, which keeps it alive).
// - Death: a receiver killed after the hand-off holds the object exactly as a fork child would (a Lock it
//   held is recovered by the next acquirer: OwnerDied); a sender killed before the handle was sent leaves
//   the receiver with Closed (or a hand-off message and then Closed).
// Costs: one framed message and one sendmsg; on the receiver, a recv and a recvmsg at most (often one
// read-ahead holds both), then what from_fd costs (dup, fstat, F_GET_SEALS, mmap).
// Condition: only a Condition holding its own lock can be handed over (see Condition::from_fd).
#pragma once

#include <string>
#include <string_view>
#include <type_traits>

#include "mproc/array.hpp"
#include "mproc/barrier.hpp"
#include "mproc/condition.hpp"
#include "mproc/connection.hpp"
#include "mproc/event.hpp"
#include "mproc/joinable_queue.hpp"
#include "mproc/lock.hpp"
#include "mproc/pipe.hpp"
#include "mproc/queue.hpp"
#include "mproc/rlock.hpp"
#include "mproc/semaphore.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/simple_queue.hpp"
#include "mproc/unique_fd.hpp"
#include "mproc/value.hpp"

namespace mproc {

// The name a handle type travels under; both ends must agree on it.
template <class Handle>
struct HandoffName;

template <> struct HandoffName<SharedMemory> { static constexpr std::string_view value = "shared memory"; };
template <> struct HandoffName<Lock> { static constexpr std::string_view value = "lock"; };
template <> struct HandoffName<RLock> { static constexpr std::string_view value = "rlock"; };
template <> struct HandoffName<Semaphore> { static constexpr std::string_view value = "semaphore"; };
template <> struct HandoffName<BoundedSemaphore> { static constexpr std::string_view value = "bounded semaphore"; };
template <> struct HandoffName<Event> { static constexpr std::string_view value = "event"; };
template <> struct HandoffName<Condition> { static constexpr std::string_view value = "condition"; };
template <> struct HandoffName<Barrier> { static constexpr std::string_view value = "barrier"; };
template <> struct HandoffName<ByteQueue> { static constexpr std::string_view value = "byte queue"; };
template <SharedElement T, Locking L> struct HandoffName<Value<T, L>> { static constexpr std::string_view value = "value"; };
template <SharedElement T, Locking L> struct HandoffName<Array<T, L>> { static constexpr std::string_view value = "array"; };
template <class T> struct HandoffName<Queue<T>> { static constexpr std::string_view value = "queue"; };
template <class T> struct HandoffName<SimpleQueue<T>> { static constexpr std::string_view value = "simple queue"; };
template <class T> struct HandoffName<JoinableQueue<T>> { static constexpr std::string_view value = "joinable queue"; };
// An anonymous Pipe's end travels as "pipe end 0" or "pipe end 1": the receiver becomes a holder of that end
// (PipeConnection::from_fd), the sender keeps its own hold until it closes its handle.
template <> struct HandoffName<PipeConnection> { static constexpr std::string_view value = "pipe end"; };

namespace detail {
// The two halves of the wire above (src/handoff.cpp).
MPROC_API void send_handoff(FdConnection& connection, std::string_view name, int fd);
MPROC_API UniqueFd receive_handoff(FdConnection& connection, std::string_view name);
MPROC_API PipeConnection receive_pipe_end_handoff(FdConnection& connection);
}  // namespace detail

// Sends the object's descriptor and name; the sender keeps its handle.
template <class Handle>
void send_object(FdConnection& connection, const Handle& object) {
    if constexpr (std::is_same_v<Handle, PipeConnection>) {
        const std::string name = std::string(HandoffName<Handle>::value) + (object.end_index() == 0 ? " 0" : " 1");
        detail::send_handoff(connection, name, object.fd());
    } else {
        detail::send_handoff(connection, HandoffName<Handle>::value, object.fd());
    }
}

// Receives an object sent by send_object<Handle>, validated by Handle::from_fd.
template <class Handle>
Handle recv_object(FdConnection& connection) {
    if constexpr (std::is_same_v<Handle, PipeConnection>) {
        return detail::receive_pipe_end_handoff(connection);
    } else {
        const UniqueFd fd = detail::receive_handoff(connection, HandoffName<Handle>::value);
        if constexpr (std::is_same_v<Handle, SharedMemory>) return SharedMemory::attach(fd.get());
        else return Handle::from_fd(fd.get());
    }
}

}  // namespace mproc
