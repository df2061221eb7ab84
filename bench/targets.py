"""The performance targets mproc promises and the machine regime a run measured them in.

Each target is a ratio between two figures of the same run (mproc against a peer or against a ceiling
measured beside it), with the bound it must meet. A run is one pass of bench/run over every binary; with
`bench/run --runs N` the report shows each target's ratio in every run, with min, median and max.

Regimes: on the 2-vCPU guests the project runs on, streams between the two vCPUs switch between a fast and
a slow regime (docs/benchmarks.md, "Two regimes on this guest"). bench/run measures two ceilings just before
and just after each binary (the raw SPSC ring with 64-byte messages and the cache-line ping-pong, from
bench_ceilings) and the report names the regime each binary ran in, so a ratio can be read against it.
"""
import json
import os
import statistics

# A target: (name, numerator benchmark, denominator benchmark, metric, bound, direction).
#   metric "rate": the ratio is numerator items/s ÷ denominator items/s;
#   metric "time": numerator time ÷ denominator time.
#   direction ">=": met when ratio >= bound; "<=": met when ratio <= bound.
TARGETS = [
    ("contended Lock hand-off ÷ glibc robust mutex (acquisitions/s)",
     "BM_Lock_Handoff/mproc", "BM_Lock_Handoff/glibc_robust", "rate", 1.0, ">="),
    ("uncontended lock+unlock time ÷ glibc robust mutex",
     "BM_Lock_Uncontended/mproc", "BM_Lock_Uncontended/glibc_robust", "time", 1.0, "<="),
    ("MPMC Queue 2P2C 64 B ÷ Boost message_queue (messages/s)",
     "BM_Queue2P2C_mproc_mpmc/64", "BM_Queue2P2C_boost/64", "rate", 5.0, ">="),
    ("SPSC Queue 64 B ÷ raw SPSC ring doing the same work (messages/s)",
     "BM_Queue1P1C_mproc_spsc/64", "BM_QueueCeiling_RawSpscRing/64", "rate", 0.8, ">="),
    ("Pipe spinning round trip 64 B ÷ cache-line ping-pong (time)",
     "BM_PipeRoundTrip_spin_64B/mproc", "BM_PipeCeiling/cache_line_ping_pong", "time", 2.0, "<="),
    ("Pool.map of trivial tasks ÷ Python's Pool.map (tasks/s)",
     "BM_Pool_MapTrivial/mproc", "BM_Pool_MapTrivial/python_pool", "rate", 50.0, ">="),
    ("Pool CPU-bound speed-up ÷ OpenMP's (the serial rate cancels out)",
     "BM_Pool_CpuBound/mproc", "BM_Pool_CpuBound/openmp", "rate", 0.9, ">="),
]

# The two probes bench/run takes around each binary, and the thresholds between the regimes. The fast
# regime's raw ring ran at 50-84 M/s and its cache-line ping-pong at 105-140 ns on these guests; the slow
# one at 9-30 M/s and 250-900 ns (docs/benchmarks.md). The thresholds sit between the two clusters.
PROBE_RING = "BM_Ceiling_RawSpscRing/64"
PROBE_PING_PONG = "BM_Ceiling_CacheLinePingPong"
FAST_RING_MIN_RATE = 40e6       # messages/s at or above: the ring says "fast"
FAST_PING_PONG_MAX_NS = 200.0   # round trip at or below: the ping-pong says "fast"
# Two spinning processes on two vCPUs hand a line over in under a microsecond in either regime; a round trip
# of several microseconds means a spinner lost its vCPU to something else: the machine was busy, and no
# figure of that binary should be quoted.
LOADED_PING_PONG_MIN_NS = 5000.0


def target_ratio(results, target):
    """The target's ratio in one run's results, or (None, reason) when a figure is missing or failed."""
    _, numerator, denominator, metric, _, _ = target
    figures = []
    for name in (numerator, denominator):
        result = results.get(name)
        if result is None:
            return None, f"{name} not measured"
        if result.get("error"):
            return None, f"{name}: {result['error']}"
        value = result.get("items_per_second") if metric == "rate" else result.get("time_ns")
        if not value:
            return None, f"{name} has no {'rate' if metric == 'rate' else 'time'}"
        figures.append(value)
    return figures[0] / figures[1], None


def met(target, ratio):
    bound, direction = target[4], target[5]
    return ratio >= bound if direction == ">=" else ratio <= bound


def evaluate(runs):
    """For each target: its ratio in every run (None where unmeasured), min/median/max of the measured
    ones, and the verdict: 'met' (every run measured it and met it), 'not met' (some run missed it) or
    'not measured'."""
    rows = []
    for target in TARGETS:
        ratios = []
        reasons = []
        for results in runs:
            ratio, reason = target_ratio(results, target)
            ratios.append(ratio)
            reasons.append(reason)
        measured = [ratio for ratio in ratios if ratio is not None]
        if not measured:
            verdict = "not measured"
        elif all(met(target, ratio) for ratio in measured) and len(measured) == len(ratios):
            verdict = "met"
        elif all(met(target, ratio) for ratio in measured):
            verdict = "not measured in every run"
        else:
            verdict = "not met"
        rows.append({
            "name": target[0],
            "bound": f"{target[5]} {target[4]:g}×",
            "ratios": ratios,
            "reasons": reasons,
            "min": min(measured) if measured else None,
            "median": statistics.median(measured) if measured else None,
            "max": max(measured) if measured else None,
            "verdict": verdict,
        })
    return rows


def classify_probe(results):
    """The regime one probe (before or after a binary) shows: 'fast', 'slow', 'mixed' (the two ceilings
    disagree), 'loaded' (something else held the CPUs) or None when the probe did not measure both."""
    ring = results.get(PROBE_RING)
    ping = results.get(PROBE_PING_PONG)
    if not ring or not ping or ring.get("error") or ping.get("error"):
        return None
    rate = ring.get("items_per_second")
    time_ns = ping.get("time_ns")
    if not rate or not time_ns:
        return None
    if time_ns >= LOADED_PING_PONG_MIN_NS:
        return "loaded"
    ring_fast = rate >= FAST_RING_MIN_RATE
    ping_fast = time_ns <= FAST_PING_PONG_MAX_NS
    if ring_fast and ping_fast:
        return "fast"
    if not ring_fast and not ping_fast:
        return "slow"
    return "mixed"


def classify_binary(before, after):
    """One binary's regime from the probes around it: the common regime, 'changed (X → Y)', or 'unknown'."""
    first = classify_probe(before) if before is not None else None
    last = classify_probe(after) if after is not None else None
    if first is None and last is None:
        return "unknown"
    if first is None or last is None:
        return first or last
    return first if first == last else f"changed ({first} → {last})"


def classify_run(binary_regimes):
    """The run's regime from its binaries': the one they share, or 'mixed' when they differ."""
    known = {regime for regime in binary_regimes.values() if regime != "unknown"}
    if not known:
        return "unknown"
    return known.pop() if len(known) == 1 else "mixed"


def load_probes(regime_dir, load_results):
    """{binary: (before results, after results)} from regime_dir/BINARY.before.json and .after.json, read
    with the report's own loader (a function of a directory)."""
    probes = {}
    if not os.path.isdir(regime_dir):
        return probes
    for file_name in sorted(os.listdir(regime_dir)):
        for side in ("before", "after"):
            suffix = f".{side}.json"
            if not file_name.endswith(suffix):
                continue
            binary = file_name[: -len(suffix)]
            try:
                with open(os.path.join(regime_dir, file_name)) as handle:
                    data = json.load(handle)
            except (OSError, ValueError):
                continue
            results = load_results(data)
            before, after = probes.get(binary, (None, None))
            probes[binary] = (results, after) if side == "before" else (before, results)
    return probes


def probe_figures(results):
    """(ring messages/s, ping-pong ns) of one probe, each None when missing."""
    if results is None:
        return None, None
    ring = results.get(PROBE_RING) or {}
    ping = results.get(PROBE_PING_PONG) or {}
    return ring.get("items_per_second"), ping.get("time_ns")
