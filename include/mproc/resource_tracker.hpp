// mproc/resource_tracker.hpp — Python's resource tracker for named objects: opt-in, per process tree.
//
// Defines: start_resource_tracker(), resource_tracker_running().
//
// Guarantees
// - After start_resource_tracker(), every named object this process or any process fork()ed from it
//   afterwards creates (SharedMemory::create_object, so every kind's create()) is registered with a tracker
//   process, and unregistered by unlink(). When the last process of the tree has ended — normally or by
//   SIGKILL: the tracker learns it from the kernel closing the tree's last copy of a pipe, not from a
//   message — the tracker unlinks every registered name that still exists and writes one warning naming
//   them, as Python's "resource_tracker: There appear to be N leaked shared_memory objects":
//     mproc resource tracker: unlinked 2 leaked objects: /jobs /jobs-lock
// - It never unlinks an object that a process outside the tree still maps or holds open (/proc/PID/maps,
//   /proc/PID/fd): it names those in a second warning ("left in place, still in use: ...") and leaves them.
// - A process exec()ing another program leaves the tree (the pipe is close-on-exec).
// Costs: start: two fork()s and a pipe. Per named create or unlink: one write() of the name to the pipe
// (a name is at most 255 bytes, so every write is atomic, under PIPE_BUF). Nothing on any other path.
// The tracker process sleeps in read() until the tree ends, then scans /proc once.
// Misuse: starting twice in one tree is harmless (the second call returns false and does nothing).
// Death: the tracker is a separate session (setsid), so a signal to the tree's process group does not
// reach it; if the tracker itself is killed, nothing is unlinked (the objects stay, as without tracker).
#pragma once

#include "mproc/export.hpp"

namespace mproc {

// Starts the tracker for this process and the children it forks from now on. Warnings go to warning_fd
// (default: stderr; the tracker keeps its own copy). Returns false when this process already has one
// (started here or inherited). SystemError when pipe() or fork() fails.
MPROC_API bool start_resource_tracker(int warning_fd = 2);

// Whether this process reports to a tracker.
MPROC_API bool resource_tracker_running() noexcept;

namespace detail {
// Tells the tracker, if any, that `name` was created ('R') or unlinked ('U'). Async-signal-safe; never fails.
void resource_tracker_note(char operation, const char* name) noexcept;
}  // namespace detail

}  // namespace mproc
