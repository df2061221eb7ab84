// mproc/mproc.hpp — the umbrella header: every public concept of mproc.
#pragma once

#include "mproc/array.hpp"
#include "mproc/barrier.hpp"
#include "mproc/condition.hpp"
#include "mproc/error.hpp"
#include "mproc/event.hpp"
#include "mproc/lock.hpp"
#include "mproc/object_header.hpp"
#include "mproc/process.hpp"
#include "mproc/rlock.hpp"
#include "mproc/semaphore.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/value.hpp"
