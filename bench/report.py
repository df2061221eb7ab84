#!/usr/bin/env python3
"""Builds the benchmark report (index.md and PNG charts drawn by gnuplot) from Google Benchmark JSON files.

Every figure is read against the ceilings measured in the same run, and every mproc figure is set beside
its peers: the tables below are declared in CEILINGS and COMPARISONS, so a new primitive adds its
comparison there; every benchmark also appears in the per-binary tables at the end, declared or not.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone

import targets

# (label, benchmark name) of the hardware ceilings; each is measured between two processes.
CEILINGS = [
    ("cache-line ping-pong round trip (spinning)", "BM_Ceiling_CacheLinePingPong"),
    ("futex wake ping-pong round trip", "BM_Ceiling_FutexPingPong"),
    ("pipe ping-pong round trip, 1 byte", "BM_Ceiling_PipePingPong"),
    ("pipe stream, one write per 64-byte message", "BM_Ceiling_PipeStream64"),
    ("raw SPSC ring in shared memory, 8-byte messages", "BM_Ceiling_RawSpscRing/8"),
    ("raw SPSC ring in shared memory, 64-byte messages", "BM_Ceiling_RawSpscRing/64"),
    ("cache-line ping-pong, measured again beside the Pipe benchmarks", "BM_PipeCeiling/cache_line_ping_pong"),
    ("futex ping-pong, measured again beside the Pipe benchmarks", "BM_PipeCeiling/futex_ping_pong"),
    ("raw SPSC ring, 64-byte messages, measured again beside the Queue benchmarks", "BM_QueueCeiling_RawSpscRing/64"),
    ("futex ping-pong, measured again beside the Connection benchmarks", "BM_ConnectionRoundTrip64/futex_ceiling"),
]

# One table per comparison: the first row is mproc (the reference of the ratio column); metric "time"
# compares time per operation (lower is better), "rate" compares items per second (higher is better).
COMPARISONS = [
    {
        "title": "Process start + join",
        "metric": "time",
        "rows": [
            ("mproc::Process", "BM_Process_StartJoin"),
            ("fork() + waitpid() (the floor)", "BM_Process_ForkWaitFloor"),
            ("Python multiprocessing.Process, fork", "BM_Python_ProcessStartJoin/fork"),
            ("Python multiprocessing.Process, forkserver", "BM_Python_ProcessStartJoin/forkserver"),
            ("Python multiprocessing.Process, spawn", "BM_Python_ProcessStartJoin/spawn"),
        ],
    },
]



def family(title, name, metric, members):
    """A comparison over the members of one benchmark family, BM_X/member; the first member is mproc's."""
    return {"title": title, "metric": metric, "rows": [(label, f"{name}/{member}") for member, label in members]}


LOCK_PEERS = [("mproc", "mproc::Lock"), ("mproc_raw", "mproc::RawLock (no handle)"),
              ("glibc_robust", "glibc robust process-shared pthread_mutex"),
              ("boost", "Boost.Interprocess interprocess_mutex"), ("python", "Python multiprocessing.Lock")]
COMPARISONS += [
    family("Lock: uncontended lock + unlock", "BM_Lock_Uncontended", "time", LOCK_PEERS),
    family("Lock: contended hand-off between 2 processes (acquisitions/s)", "BM_Lock_Handoff", "rate",
           [peer for peer in LOCK_PEERS if peer[0] != "mproc_raw"]),
    family("Lock: strict ping-pong round trip between 2 processes", "BM_Lock_PingPong", "time",
           [peer for peer in LOCK_PEERS if peer[0] != "mproc_raw"]
           # Each side waits for its turn spinning outside the lock: the cache-line ping-pong is its ceiling;
           # the futex ping-pong (two sleeps per round trip) is other work, shown for scale.
           + [("cache_line_ceiling", "ceiling: cache-line ping-pong"),
              ("futex_ceiling", "futex ping-pong (sleeps on both sides: other work, for scale)")]),
    family("Semaphore: round trip back to back (a spin may catch the signal: see the sleeps)", "BM_Semaphore_WakeLatency", "time",
           [("mproc", "mproc::Semaphore"), ("sem_t", "POSIX sem_t"),
            ("boost", "Boost.Interprocess interprocess_semaphore"), ("python", "Python multiprocessing.Semaphore"),
            ("futex_ceiling", "ceiling: futex ping-pong")]),
    family("Semaphore: wake from sleep (both one-way wake-ups)", "BM_Semaphore_WakeFromSleep", "time",
           [("mproc", "mproc::Semaphore"), ("sem_t", "POSIX sem_t"),
            ("boost", "Boost.Interprocess interprocess_semaphore"), ("futex_ceiling", "ceiling: bare futex words")]),
    family("Event: round trip back to back (a spin may catch the signal: see the sleeps)", "BM_Event_WakeLatency", "time",
           [("mproc", "mproc::Event"), ("eventfd", "eventfd: write() / blocking read()"),
            ("python", "Python multiprocessing.Event"), ("futex_ceiling", "ceiling: futex ping-pong")]),
    family("Event: wake from sleep (both one-way wake-ups)", "BM_Event_WakeFromSleep", "time",
           [("mproc", "mproc::Event"), ("eventfd", "eventfd: write() / blocking read()"),
            ("futex_ceiling", "ceiling: bare futex words")]),
]

# Queue streams: BM_Queue1P1C_<system>/<bytes> (one family per system, so that each is one series of the
# throughput-by-size chart); the raw SPSC ring ceiling is bench_queue's own measurement beside them.
QUEUE_STREAM_PEERS = [("mproc_mpmc", "mproc::Queue, MPMC"), ("pipe", "pipe, one write per message"),
                      ("seqpacket", "AF_UNIX SOCK_SEQPACKET socketpair"), ("posix_mq", "POSIX message queue"),
                      ("boost", "Boost.Interprocess message_queue"), ("python", "Python multiprocessing.Queue"),
                      ("iceoryx", "iceoryx 2.0 publish/subscribe, zero-copy (loan, publish, take)")]
COMPARISONS += [
    {
        "title": "Queue: 64-byte messages, 1 producer → 1 consumer (messages/s)",
        "metric": "rate",
        "rows": [("mproc::Queue, SPSC", "BM_Queue1P1C_mproc_spsc/64"),
                 ("ceiling: raw SPSC ring, measured beside", "BM_QueueCeiling_RawSpscRing/64")]
                + [(label, f"BM_Queue1P1C_{system}/64") for system, label in QUEUE_STREAM_PEERS],
    },
    {
        "title": "Queue: 64-byte messages, 2 producers → 2 consumers (messages/s)",
        "metric": "rate",
        "rows": [("mproc::Queue, MPMC", "BM_Queue2P2C_mproc_mpmc/64")]
                + [(label, f"BM_Queue2P2C_{system}/64") for system, label in QUEUE_STREAM_PEERS
                   if system in ("pipe", "seqpacket", "posix_mq", "boost", "python")],
    },
    {
        # blocking: every get() sleeps (mproc's adaptive spin off on both sides), the futex ceiling's work;
        # spin_then_sleep: get() as shipped, whose spin usually catches the reply. The sleeps column shows which.
        "title": "Queue: blocking round trip, 64-byte message",
        "metric": "time",
        "rows": [("mproc::Queue, SPSC, get() that sleeps (spin off)", "BM_QueueRoundTrip_blocking/mproc_spsc"),
                 ("mproc::Queue, MPMC, get() that sleeps (spin off)", "BM_QueueRoundTrip_blocking/mproc_mpmc"),
                 ("mproc::Queue, SPSC, get() as shipped (spins, then sleeps)",
                  "BM_QueueRoundTrip_spin_then_sleep/mproc_spsc"),
                 ("mproc::Queue, MPMC, get() as shipped (spins, then sleeps)",
                  "BM_QueueRoundTrip_spin_then_sleep/mproc_mpmc"),
                 ("pipe", "BM_QueueRoundTrip_blocking/pipe"),
                 ("iceoryx 2.0 publish/subscribe, WaitSet wait", "BM_QueueRoundTrip_blocking/iceoryx"),
                 ("ceiling: futex ping-pong", "BM_QueueRoundTrip_blocking/futex_ceiling")],
    },
    family("Queue: spinning round trip, 64-byte message", "BM_QueueRoundTrip_spin", "time",
           [("mproc_spsc", "mproc::Queue, SPSC, try_get() polling"),
            ("mproc_mpmc", "mproc::Queue, MPMC, try_get() polling"),
            ("iceoryx", "iceoryx 2.0 publish/subscribe, take() polling"),
            ("cache_line_ceiling", "ceiling: cache-line ping-pong")]),
]

# Pipe (bench_pipe): streams BM_PipeStream_<system>/<bytes> (one series per system in the throughput chart);
# round trips BM_PipeRoundTrip_<blocking|spin_then_sleep|spin>_<size>/<system>, set beside the ceilings
# bench_pipe measures itself (BM_PipeCeiling/*): spinning against the cache-line ping-pong, blocking (mproc:
# the adaptive spin off, so each recv sleeps) against the futex ping-pong.
PIPE_PEERS = [("pipe", "pipe, one write per message"), ("socketpair", "AF_UNIX SOCK_STREAM socketpair"),
              ("zmq", "ZeroMQ PAIR over ipc://"), ("python", "Python multiprocessing.Pipe")]
COMPARISONS += [
    {
        "title": f"Pipe: {label} messages, one-way stream (messages/s)",
        "metric": "rate",
        "rows": [("mproc::Pipe", f"BM_PipeStream_mproc/{size}")]
                + [(peer, f"BM_PipeStream_{system}/{size}") for system, peer in PIPE_PEERS],
    }
    for size, label in ((64, "64-byte"), (4096, "4 KiB"), (1 << 20, "1 MiB"))
] + [
    {
        "title": f"Pipe: round trip, {label} each way",
        "metric": "time",
        "rows": [("mproc::Pipe, recv that sleeps (spin off)", f"BM_PipeRoundTrip_blocking_{size}/mproc"),
                 ("mproc::Pipe, recv as shipped (spins, then sleeps)",
                  f"BM_PipeRoundTrip_spin_then_sleep_{size}/mproc"),
                 ("mproc::Pipe, spinning (poll() until ready, then recv)", f"BM_PipeRoundTrip_spin_{size}/mproc")]
                + [(peer, f"BM_PipeRoundTrip_blocking_{size}/{system}") for system, peer in PIPE_PEERS]
                + [("ceiling: futex ping-pong", "BM_PipeCeiling/futex_ping_pong"),
                   ("ceiling: cache-line ping-pong", "BM_PipeCeiling/cache_line_ping_pong")],
    }
    for size, label in (("8B", "8 B"), ("64B", "64 B"), ("4KiB", "4 KiB"), ("64KiB", "64 KiB"), ("1MiB", "1 MiB"))
]

# Connection (bench_connection): FdConnection with its io_uring and read/write backends; each benchmark's
# label (shown in the per-binary table) names the backend each side used.
COMPARISONS += [
    family("Connection: 64-byte messages, one-way stream (messages/s)", "BM_ConnectionStream64", "rate",
           [("io_uring_send_many_pipe", "FdConnection over a pipe, io_uring, send_many of 64"),
            ("io_uring_send_many_socketpair", "FdConnection over a socketpair, io_uring, send_many of 64"),
            ("read_write_send_many_pipe", "FdConnection over a pipe, read/write, send_many of 64"),
            ("io_uring_send_bytes_pipe", "FdConnection over a pipe, io_uring, send_bytes each"),
            ("read_write_send_bytes_pipe", "FdConnection over a pipe, read/write, send_bytes each"),
            ("pipe_write", "pipe, one write() per message"), ("python", "Python multiprocessing.Pipe")]),
    family("Connection: blocking round trip, 64-byte message", "BM_ConnectionRoundTrip64", "time",
           [("io_uring_socketpair", "FdConnection over a socketpair, io_uring"),
            ("read_write_socketpair", "FdConnection over a socketpair, read/write"),
            ("io_uring_pipe", "FdConnection over two pipes, io_uring"), ("pipe", "two pipes, write()/read()"),
            ("futex_ceiling", "ceiling: futex ping-pong")]),
]

# Pool (bench_pool): dispatch overhead, apply round trip, CPU-bound speed-up (rate ÷ serial's) against OpenMP.
COMPARISONS += [
    family("Pool: map(x → x + 1), default chunksize, 2 workers (tasks/s)", "BM_Pool_MapTrivial", "rate",
           [("mproc", "mproc::Pool::map, 10^6 inputs"), ("python_pool", "Python multiprocessing.Pool.map, 10^6 inputs"),
            ("python_executor", "Python ProcessPoolExecutor.map, 2·10^4 inputs (its default chunksize 1)")]),
    family("Pool: apply_async(f, (x,)).get() round trip, 2 workers", "BM_Pool_ApplyRoundTrip", "time",
           [("mproc", "mproc::Pool::apply_async().get()"), ("python", "Python Pool.apply_async().get()")]),
    family("Pool: CPU-bound map on every CPU (tasks/s; ÷ serial = speed-up)", "BM_Pool_CpuBound", "rate",
           [("mproc", "mproc::Pool::map"), ("openmp", "OpenMP parallel for (libgomp): the ceiling"),
            ("serial", "one thread, no pool")]),
]

PERCENTILES = [("p50_ns", "p50"), ("p99_ns", "p99"), ("p99.9_ns", "p99.9")]
TIME_UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def load_results(raw_dir):
    """Returns {benchmark name: result} and [(binary, [names in order])] from every JSON file in raw_dir."""
    results = {}
    binaries = []
    for file_name in sorted(os.listdir(raw_dir)):
        if not file_name.endswith(".json"):
            continue
        binary = file_name[: -len(".json")]
        with open(os.path.join(raw_dir, file_name)) as handle:
            data = json.load(handle)
        order = read_benchmarks(data, binary, results)
        binaries.append((binary, order))
    return results, binaries


def read_benchmarks(data, binary, results):
    """Adds the benchmarks of one Google Benchmark JSON document to results; returns their names in order."""
    order = []
    spreads = {}
    for entry in data.get("benchmarks", []):
        # Google Benchmark appends /min_time:X (an explicit MinTime) and /real_time or /manual_time.
        name = re.sub(r"(/min_time:[0-9.]+)?/(real|manual)_time$", "", entry.get("run_name", entry["name"]))
        aggregate = entry.get("aggregate_name")
        if aggregate == "cv":
            spreads[name] = entry.get("real_time")
            continue
        if entry.get("run_type") == "aggregate" and aggregate != "median":
            continue
        if name in results and aggregate != "median":
            continue  # repetitions without aggregates: keep the first
        scale = TIME_UNIT_NS.get(entry.get("time_unit", "ns"), 1.0)
        results[name] = {
            "binary": binary,
            "error": entry.get("error_message") if entry.get("error_occurred") else None,
            "time_ns": entry.get("real_time", 0.0) * scale,
            "items_per_second": entry.get("items_per_second"),
            "bytes_per_second": entry.get("bytes_per_second"),
            "percentiles": {key: entry[key] for key, _ in PERCENTILES if key in entry},
            "repetitions": entry.get("repetitions", 1),
            "benchmark_share": entry.get("benchmark_share"),  # BM_Lock_Handoff: the benchmark process's part
            "label": entry.get("label") or None,  # e.g. the backend an FdConnection used
            # Round trips (LatencySampler): voluntary context switches per round trip, this side and the peer.
            "sleeps": (entry["sleeps_per_rt"], entry.get("peer_sleeps_per_rt"))
            if "sleeps_per_rt" in entry else None,
        }
        if name not in order:
            order.append(name)
    for name, cv in spreads.items():
        if name in results:
            results[name]["cv"] = cv
    return order


def format_time(ns):
    if ns is None:
        return "—"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def format_rate(rate, unit=""):
    if not rate:
        return "—"
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if rate >= scale:
            return f"{rate / scale:.3g} {suffix}{unit}/s"
    return f"{rate:.3g} {unit}/s"


def format_sleeps(result):
    sleeps = result.get("sleeps")
    if not sleeps:
        return "—"
    mine, peer = sleeps
    return f"{mine:.2f} / {peer:.2f}" if peer is not None else f"{mine:.2f}"


def format_spread(result):
    cv = result.get("cv")
    return "—" if cv is None else f"±{cv * 100:.1f} %"


def machine_facts():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        load = "unknown"
    return [
        ("CPU", model),
        ("cores", str(os.cpu_count())),
        ("kernel", platform.release()),
        ("load average at report time", load),
        ("date", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
    ]


class Charts:
    """Writes gnuplot data and scripts under charts/ and renders each to PNG."""

    def __init__(self, out_dir):
        self.dir = os.path.join(out_dir, "charts")
        os.makedirs(self.dir, exist_ok=True)
        self.failures = []

    def render(self, name, script, rows, height=None):
        # height: pixels; by default one bar's worth per row (the bar charts' rows are bars).
        data_path = os.path.join(self.dir, name + ".dat")
        with open(data_path, "w") as handle:
            for row in rows:
                handle.write("\t".join(str(value) for value in row) + "\n")
        script_path = os.path.join(self.dir, name + ".gp")
        png = os.path.join(self.dir, name + ".png")
        header = (
            f"set terminal pngcairo size 1000,{height or max(360, 40 * len(rows) + 160)} font 'sans,10'\n"
            f"set output '{png}'\nset datafile separator '\\t'\nset grid xtics ytics\n"
        )
        with open(script_path, "w") as handle:
            handle.write(header + script.replace("DATA", f"'{data_path}'"))
        completed = subprocess.run(["gnuplot", script_path], capture_output=True, text=True)
        if completed.returncode != 0 or not os.path.exists(png):
            self.failures.append(f"{name}: {completed.stderr.strip()}")
            return None
        return f"charts/{name}.png"

    def horizontal_bars(self, name, title, xlabel, labelled_values):
        # gnuplot's enhanced text reads '_' as a subscript ("try_get", "io_uring"); '\\_' is a plain one.
        rows = [(index, label.replace("_", "\\\\_"), value)
                for index, (label, value) in enumerate(labelled_values) if value]
        if not rows:
            return None
        # A log axis has no zero: bars start a factor of 4 below the smallest value.
        base = min(value for _, _, value in rows) / 4
        top = max(value for _, _, value in rows) * 4
        script = (
            f"set title '{title}'\nset xlabel '{xlabel}'\nset logscale x\nset style fill solid 0.7\n"
            f"set xrange [{base}:{top}]\nset yrange [{len(rows) - 0.3}:-0.7]\nunset key\n"
            # boxxyerrorbars: x, y, xlow, xhigh, ylow, yhigh.
            f"plot DATA using 3:1:({base}):3:($1-0.35):($1+0.35):yticlabels(2) with boxxyerrorbars "
            "lc rgb '#3465a4'\n"
        )
        return self.render(name, script, rows)

    def split_bars(self, name, title, xlabel, rows, parts):
        """Horizontal bars on a linear axis, each split into len(parts) segments laid end to end.

        rows: (label, value of part 0, value of part 1, ...); parts: the key title of each segment."""
        rows = [(index, label) + tuple(values) for index, (label, *values) in enumerate(rows)]
        if not rows:
            return None
        total = max(sum(row[2:]) for row in rows)
        colours = ["#3465a4", "#f57900", "#888a85", "#73d216"]
        plots = []
        for part, key in enumerate(parts):
            low = "+".join(f"${column}" for column in range(3, 3 + part)) or "0"
            high = f"({low}+${3 + part})"
            ticks = ":yticlabels(2)" if part == 0 else ""
            # boxxyerrorbars: x, y, xlow, xhigh, ylow, yhigh; an empty segment is drawn as nothing.
            plots.append(f"DATA using (${3 + part}>0?({low}+{high})/2:1/0):1:({low}):{high}:($1-0.35):($1+0.35)"
                         f"{ticks} with boxxyerrorbars lc rgb '{colours[part % len(colours)]}' title '{key}'")
        sums = "+".join(f"${column}" for column in range(3, 3 + len(parts)))
        plots.append(f"DATA using ({sums}):1:(sprintf('  %.3g M/s', ({sums})/1e6)) with labels left notitle")
        script = (
            f"set termoption noenhanced\nset title '{title}'\nset xlabel '{xlabel}'\nset style fill solid 0.7\n"
            f"set xrange [0:{total * 1.3}]\nset yrange [{len(rows) - 0.3}:-0.7]\nset key outside right top vertical\n"
            "set format x '%.0s%c'\n"
            "plot " + ", ".join(plots) + "\n"
        )
        return self.render(name, script, rows)

    def percentiles(self, name, title, rows):
        """One group of three horizontal bars (p50, p99, p99.9) per system, on a log axis.

        rows: (label, p50, p99, p99.9) in nanoseconds."""
        rows = [(index, label, *values) for index, (label, *values) in enumerate(rows)
                if all(value and value > 0 for value in values)]
        if not rows:
            return None
        base = min(min(row[2:]) for row in rows) / 4
        top = max(max(row[2:]) for row in rows) * 4
        plots = []
        colours = ["#3465a4", "#f57900", "#cc0000"]
        for part, key in enumerate(["p50", "p99", "p99.9"]):
            offset = (part - 1) * 0.27
            ticks = ":yticlabels(2)" if part == 0 else ""
            # boxxyerrorbars: x, y, xlow, xhigh, ylow, yhigh.
            plots.append(f"DATA using {3 + part}:($1+{offset}):({base}):{3 + part}:($1+{offset}-0.12):"
                         f"($1+{offset}+0.12){ticks} with boxxyerrorbars lc rgb '{colours[part]}' title '{key}'")
        script = (
            f"set termoption noenhanced\nset title '{title}'\nset xlabel 'ns per round trip (log)'\n"
            f"set logscale x\nset style fill solid 0.8\nset xrange [{base}:{top}]\n"
            f"set yrange [{len(rows) - 0.4}:-0.6]\nset key outside right top vertical\n"
            "plot " + ", ".join(plots) + "\n"
        )
        return self.render(name, script, rows, height=max(360, 60 * len(rows) + 160))

    def throughput_vs_size(self, name, title, series):
        # series: {family: [(size, items_per_second)]}; one line per family, log-log.
        rows = []
        plots = []
        for index, (family, points) in enumerate(sorted(series.items())):
            for size, rate in sorted(points):
                rows.append((index, size, rate))
            plots.append(
                f"DATA using (($1=={index})?$2:1/0):3 with linespoints title '{family.replace('_', ' ')}'"
            )
        if not rows:
            return None
        script = (
            f"set title '{title}'\nset xlabel 'message size (bytes)'\nset ylabel 'messages per second'\n"
            "set logscale xy\nset key outside right\nplot " + ", ".join(plots) + "\n"
        )
        return self.render(name, script, rows, height=700)


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def format_ratio(ratio):
    return "—" if ratio is None else f"{ratio:.2f}×"


def targets_section(runs):
    """The targets table (every run's ratio, min/median/max, verdict) and each run's regime."""
    rows = targets.evaluate([run["results"] for run in runs])
    run_heads = " | ".join(f"run {index + 1}" for index in range(len(runs)))
    lines = ["## Targets", "",
             "Each target is a ratio of two figures measured in the same run; the verdict is *met* only when every",
             "run measured it and met it. The regime is that of the binaries the two figures came from (see",
             "\"Regime\" below).", "",
             f"| target | bound | {run_heads} | min | median | max | verdict |",
             "|---|---|" + "---|" * len(runs) + "---|---|---|---|"]
    for row in rows:
        cells = []
        for index, ratio in enumerate(row["ratios"]):
            if ratio is None:
                cells.append(f"— ({row['reasons'][index]})")
            else:
                cells.append(f"{format_ratio(ratio)} ({target_regime(runs[index], row['name'])})")
        lines.append(f"| {row['name']} | {row['bound']} | " + " | ".join(cells) +
                     f" | {format_ratio(row['min'])} | {format_ratio(row['median'])} | {format_ratio(row['max'])} |"
                     f" **{row['verdict']}** |")
    lines.append("")
    lines += ["## Regime", "",
              f"bench/run measures the raw SPSC ring (64 B) and the cache-line ping-pong just before and just after "
              f"each binary. A probe says *fast* when the ring moves ≥ {targets.FAST_RING_MIN_RATE / 1e6:g} M "
              f"messages/s and the ping-pong takes ≤ {targets.FAST_PING_PONG_MAX_NS:g} ns, *slow* when neither "
              "does, *mixed* when they disagree, and *loaded* when the ping-pong takes ≥ "
              f"{targets.LOADED_PING_PONG_MIN_NS / 1e3:g} µs (a spinner lost its CPU: something else was running; "
              "do not quote that binary's figures).", ""]
    for index, run in enumerate(runs):
        regimes = run["regimes"]
        lines += [f"Run {index + 1}{' (' + run['started'] + ')' if run.get('started') else ''}: "
                  f"**{targets.classify_run(regimes)}**.", "",
                  "| binary | regime | ring before | ring after | ping-pong before | ping-pong after |",
                  "|---|---|---|---|---|---|"]
        for binary in sorted(regimes):
            before, after = run["probes"].get(binary, (None, None))
            ring_before, ping_before = targets.probe_figures(before)
            ring_after, ping_after = targets.probe_figures(after)
            lines.append(f"| {binary} | {regimes[binary]} | {format_rate(ring_before)} | {format_rate(ring_after)} | "
                         f"{format_time(ping_before)} | {format_time(ping_after)} |")
        if not regimes:
            lines.append("| (no probes recorded) | | | | | |")
        lines.append("")
    return lines


def target_regime(run, target_name):
    """The regime of the binaries that measured a target's two figures in one run."""
    target = next(t for t in targets.TARGETS if t[0] == target_name)
    seen = set()
    for name in (target[1], target[2]):
        result = run["results"].get(name)
        if result is not None:
            seen.add(run["regimes"].get(result["binary"], "unknown"))
    return " / ".join(sorted(seen)) if seen else "unknown"


def build_report(results, binaries, out_dir, quick, runs=None):
    """runs: every run of a bench/run --runs N ({results, probes, regimes, started}); the first is the one
    the tables below the targets show. Defaults to the one run given by results."""
    if runs is None:
        runs = [{"results": results, "probes": {}, "regimes": {}}]
    charts = Charts(out_dir)
    lines = ["# mproc benchmark report", ""]
    if quick:
        lines += ["**Quick run** (`bench/run --quick`): one short repetition each — these figures only show that",
                  "every benchmark runs; do not quote them.", ""]
    lines += targets_section(runs)
    lines += ["## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in machine_facts()]
    lines += ["", "Figures are medians of the repetitions; the spread is the coefficient of variation. On a shared",
              "machine spinning and wake-up figures move between runs: read ratios measured in this run.", ""]

    # Ceilings.
    lines += ["## Reference ceilings (measured in this run)", "",
              "| ceiling | time per round trip or message | spread | rate | p50 | p99 | p99.9 |",
              "|---|---|---|---|---|---|---|"]
    ceiling_bars = []
    for label, name in CEILINGS:
        result = results.get(name)
        if result is None:
            lines.append(f"| {label} | not measured | | | | | |")
            continue
        if result["error"]:
            lines.append(f"| {label} | skipped: {result['error']} | | | | | |")
            continue
        p = result["percentiles"]
        lines.append(
            f"| {label} | {format_time(result['time_ns'])} | {format_spread(result)} | "
            f"{format_rate(result['items_per_second'])} | "
            + " | ".join(format_time(p.get(key)) if key in p else "—" for key, _ in PERCENTILES) + " |"
        )
        ceiling_bars.append((label, result["time_ns"]))
    chart = charts.horizontal_bars("ceilings", "Reference ceilings", "ns per round trip or message (log)",
                                   ceiling_bars)
    if chart:
        lines += ["", f"![ceilings]({chart})"]
    lines.append("")

    # Comparisons.
    for comparison in COMPARISONS:
        title = comparison["title"]
        reference = results.get(comparison["rows"][0][1])
        lines += [f"## {title}", ""]
        if comparison["metric"] == "time":
            lines += ["| system | time per operation | spread | time ÷ mproc's | p50 | p50 ÷ mproc's | sleeps per round trip (this side / peer) |",
                      "|---|---|---|---|---|---|---|"]
        else:
            lines += ["| system | rate | spread | mproc's rate ÷ this |", "|---|---|---|---|"]
        bars = []
        for label, name in comparison["rows"]:
            result = results.get(name)
            if result is None:
                lines.append(f"| {label} | not measured | | |")
                continue
            if result["error"]:
                lines.append(f"| {label} | skipped: {result['error']} | | |")
                continue
            ratio = "—"
            usable_reference = reference and not reference["error"]
            if comparison["metric"] == "time":
                if usable_reference and reference["time_ns"]:
                    ratio = f"{result['time_ns'] / reference['time_ns']:.2f}×"
                p50 = result["percentiles"].get("p50_ns")
                reference_p50 = reference["percentiles"].get("p50_ns") if usable_reference else None
                p50_ratio = f"{p50 / reference_p50:.2f}×" if p50 and reference_p50 else "—"
                lines.append(f"| {label} | {format_time(result['time_ns'])} | {format_spread(result)} | {ratio} | "
                             f"{format_time(p50) if p50 else '—'} | {p50_ratio} | {format_sleeps(result)} |")
                bars.append((label, result["time_ns"]))
            else:
                if usable_reference and result["items_per_second"]:
                    ratio = f"{reference['items_per_second'] / result['items_per_second']:.2f}×"
                lines.append(f"| {label} | {format_rate(result['items_per_second'])} | {format_spread(result)} | "
                             f"{ratio} |")
                bars.append((label, result["items_per_second"]))
        axis = "ns per operation (log)" if comparison["metric"] == "time" else "operations per second (log)"
        chart = charts.horizontal_bars("compare-" + slug(title), title, axis, bars)
        if chart:
            lines += ["", f"![{title}]({chart})"]
        # Latency percentiles of the systems in this table that sample each round trip.
        percentile_rows = []
        for label, name in comparison["rows"]:
            result = results.get(name)
            if result and not result["error"] and all(key in result["percentiles"] for key, _ in PERCENTILES):
                percentile_rows.append((label,) + tuple(result["percentiles"][key] for key, _ in PERCENTILES))
        if len(percentile_rows) >= 2:
            chart = charts.percentiles("percentiles-" + slug(title), f"{title}: p50, p99, p99.9", percentile_rows)
            if chart:
                lines += ["", f"![{title}: latency percentiles]({chart})"]
        lines.append("")

    # Contended lock hand-off: the acquisitions per second of each lock, split by the process that made them.
    handoff_rows = []
    handoff_lines = []
    for member, label in LOCK_PEERS:
        result = results.get(f"BM_Lock_Handoff/{member}")
        if result is None or result["error"] or not result["items_per_second"]:
            continue
        rate = result["items_per_second"]
        share = result.get("benchmark_share")
        if share is None:  # timed elsewhere (Python): the total only
            handoff_rows.append((label, 0, 0, rate))
            handoff_lines.append(f"| {label} | {format_rate(rate)} | not reported | not reported |")
        else:
            handoff_rows.append((label, rate * share, rate * (1 - share), 0))
            handoff_lines.append(f"| {label} | {format_rate(rate)} | {share * 100:.0f} % | {(1 - share) * 100:.0f} % |")
    chart = charts.split_bars("lock-handoff", "Contended lock hand-off between 2 processes",
                              "acquisitions per second (both processes)", handoff_rows,
                              ["benchmark process", "peer process", "total (split not reported)"])
    if handoff_lines:
        lines += ["## Contended lock hand-off", "",
                  "Two processes each lock, add one to a shared counter and unlock, as fast as they can. A lock",
                  "that lets one process win again and again hands off less often and scores higher: read the",
                  "split beside the rate.", "",
                  "| lock | acquisitions/s | by the benchmark process | by the peer |", "|---|---|---|---|"]
        lines += handoff_lines
        if chart:
            lines += ["", f"![contended lock hand-off]({chart})"]
        lines.append("")

    # Latency percentiles: charted beside each round-trip table above.

    # Throughput against message size, for every family measured at several sizes.
    series = {}
    for name, result in results.items():
        match = re.match(r"^(.*)/(\d+)$", name)
        if match and result["items_per_second"] and not result["error"]:
            series.setdefault(match.group(1).replace("BM_", ""), []).append(
                (int(match.group(2)), result["items_per_second"]))
    series = {family: points for family, points in series.items() if len(points) >= 2}
    chart = charts.throughput_vs_size("throughput-vs-size", "Throughput against message size", series)
    if chart:
        lines += ["## Throughput against message size", "", f"![throughput against size]({chart})", ""]

    # Everything, per binary.
    lines += ["## Every benchmark", ""]
    for binary, names in binaries:
        lines += [f"### {binary}", "",
                  "| benchmark | time | spread | items/s | bytes/s | p50 | p99 | p99.9 | sleeps/rt (this / peer) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name in names:
            result = results[name]
            if result["error"]:
                lines.append(f"| {name} | error: {result['error']} | | | | | | | |")
                continue
            p = result["percentiles"]
            shown = f"{name} ({result['label']})" if result.get("label") else name
            lines.append(
                f"| {shown} | {format_time(result['time_ns'])} | {format_spread(result)} | "
                f"{format_rate(result['items_per_second'])} | {format_rate(result['bytes_per_second'], 'B')} | "
                + " | ".join(format_time(p.get(key)) if key in p else "—" for key, _ in PERCENTILES)
                + f" | {format_sleeps(result)} |"
            )
        lines.append("")

    lines += ["Reproduce: `bench/run` (or `bench/run --filter REGEX`); raw Google Benchmark JSON is in `raw/`.", ""]
    with open(os.path.join(out_dir, "index.md"), "w") as handle:
        handle.write("\n".join(lines))
    return charts.failures


def load_run(raw_dir, results, binaries):
    """One run: its results and binaries, the regime probes around each binary, and when it started."""
    probes = targets.load_probes(os.path.join(raw_dir, "regime"),
                                 lambda data: read_into({}, data))
    regimes = {binary: targets.classify_binary(*probes[binary]) for binary in probes}
    started = None
    try:
        with open(os.path.join(raw_dir, "regime", "started")) as handle:
            started = handle.read().strip()
    except OSError:
        pass
    return {"results": results, "binaries": binaries, "probes": probes, "regimes": regimes, "started": started}


def read_into(results, data):
    read_benchmarks(data, "probe", results)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", required=True, action="append",
                        help="directory of Google Benchmark JSON files, one per run (repeat for several runs); "
                             "its regime/ folder holds the probes taken around each binary")
    parser.add_argument("--out", required=True, help="report directory")
    parser.add_argument("--quick", action="store_true", help="mark the report as a quick run")
    arguments = parser.parse_args()
    runs = []
    for raw in arguments.raw:
        run_results, run_binaries = load_results(raw)
        if not run_results:
            print("report.py: no benchmark results found in " + raw, file=sys.stderr)
            return 1
        runs.append(load_run(raw, run_results, run_binaries))
    failures = build_report(runs[0]["results"], runs[0]["binaries"], arguments.out, arguments.quick, runs)
    for failure in failures:
        print("report.py: chart failed: " + failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
