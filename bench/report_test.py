#!/usr/bin/env python3
"""Tests of the benchmark report's verdicts and regimes (bench/targets.py, bench/report.py) on benchmark
JSON recorded on this kind of machine (bench/testdata/report/: two runs, trimmed to the rows the targets
and probes read). Run by Meson in suite 'bench'; needs python3 (and gnuplot for the end-to-end case)."""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import report  # noqa: E402
import targets  # noqa: E402

DATA = os.path.join(HERE, "testdata", "report")


def median_of(run, name, field):
    """The median a recorded run holds for one benchmark, read straight from its JSON (not through report)."""
    for path in glob.glob(os.path.join(DATA, run, "*.json")):
        with open(path) as handle:
            for entry in json.load(handle)["benchmarks"]:
                if entry["name"] == f"{name}/real_time_median":
                    return entry[field]
    return None


def recorded_run(run):
    raw = os.path.join(DATA, run)
    results, binaries = report.load_results(raw)
    return report.load_run(raw, results, binaries)


class TargetsTest(unittest.TestCase):
    def setUp(self):
        self.runs = [recorded_run("run-1"), recorded_run("run-2")]
        self.rows = {row["name"]: row for row in targets.evaluate([run["results"] for run in self.runs])}

    def row(self, numerator):
        return next(self.rows[t[0]] for t in targets.TARGETS if t[1] == numerator)

    def testRatiosAreTheRecordedMediansDivided(self):
        for target in targets.TARGETS:
            name, numerator, denominator, metric = target[:4]
            field = "items_per_second" if metric == "rate" else "real_time"
            for index, run in enumerate(("run-1", "run-2")):
                top, bottom = median_of(run, numerator, field), median_of(run, denominator, field)
                ratio = self.rows[name]["ratios"][index]
                if top is None or bottom is None:
                    self.assertIsNone(ratio, f"{name} in {run}")
                else:
                    self.assertAlmostEqual(top / bottom, ratio, places=9, msg=f"{name} in {run}")

    def testVerdictsOfTheRecordedRuns(self):
        # Lock hand-off: 38.1/34.6 M/s and 24.9/23.2 M/s: met in both runs.
        self.assertEqual("met", self.row("BM_Lock_Handoff/mproc")["verdict"])
        # Uncontended: 20.8 vs 21.1 ns (met), then 40.2 vs 38.2 ns (missed): one miss is enough.
        self.assertEqual("not met", self.row("BM_Lock_Uncontended/mproc")["verdict"])
        # MPMC 2P2C: 1.84× and 1.55× Boost, far from 5×.
        self.assertEqual("not met", self.row("BM_Queue2P2C_mproc_mpmc/64")["verdict"])
        self.assertEqual("met", self.row("BM_Queue1P1C_mproc_spsc/64")["verdict"])
        # The second run has no Pipe figures: not a pass.
        pipe = self.row("BM_PipeRoundTrip_spin_64B/mproc")
        self.assertEqual("not measured in every run", pipe["verdict"])
        self.assertIn("not measured", pipe["reasons"][1])

    def testMinMedianMaxOverRuns(self):
        row = self.row("BM_Lock_Handoff/mproc")
        self.assertEqual(min(row["ratios"]), row["min"])
        self.assertEqual(max(row["ratios"]), row["max"])
        self.assertAlmostEqual(sum(row["ratios"]) / 2, row["median"], places=12)

    def testBoundIsInclusiveInItsDirection(self):
        at_least = ("t", "a", "b", "rate", 5.0, ">=")
        at_most = ("t", "a", "b", "time", 1.0, "<=")
        self.assertTrue(targets.met(at_least, 5.0))
        self.assertFalse(targets.met(at_least, 4.999))
        self.assertTrue(targets.met(at_most, 1.0))
        self.assertFalse(targets.met(at_most, 1.001))

    def testFailedFigureIsNotAPass(self):
        results = {"BM_Lock_Handoff/mproc": {"error": "peer stalled", "items_per_second": 1e9},
                   "BM_Lock_Handoff/glibc_robust": {"error": None, "items_per_second": 1.0}}
        ratio, reason = targets.target_ratio(results, targets.TARGETS[0])
        self.assertIsNone(ratio)
        self.assertIn("peer stalled", reason)


def probe(rate, ping_ns):
    return {targets.PROBE_RING: {"items_per_second": rate, "error": None},
            targets.PROBE_PING_PONG: {"time_ns": ping_ns, "error": None}}


class RegimeTest(unittest.TestCase):
    def testProbeClassification(self):
        self.assertEqual("fast", targets.classify_probe(probe(60e6, 120.0)))
        self.assertEqual("slow", targets.classify_probe(probe(15e6, 900.0)))
        self.assertEqual("mixed", targets.classify_probe(probe(60e6, 900.0)))
        self.assertEqual("mixed", targets.classify_probe(probe(15e6, 120.0)))
        self.assertEqual("loaded", targets.classify_probe(probe(60e6, 150e3)))
        self.assertIsNone(targets.classify_probe({targets.PROBE_RING: {"items_per_second": 60e6}}))

    def testBinaryAndRunRegimes(self):
        self.assertEqual("fast", targets.classify_binary(probe(60e6, 120.0), probe(70e6, 110.0)))
        self.assertEqual("changed (fast → slow)", targets.classify_binary(probe(60e6, 120.0), probe(15e6, 900.0)))
        self.assertEqual("slow", targets.classify_binary(None, probe(15e6, 900.0)))
        self.assertEqual("unknown", targets.classify_binary(None, None))
        self.assertEqual("fast", targets.classify_run({"a": "fast", "b": "fast", "c": "unknown"}))
        self.assertEqual("mixed", targets.classify_run({"a": "fast", "b": "slow"}))

    def testRecordedProbesShowALoadedMachine(self):
        # Recorded while other builds ran: cache-line round trips of 157 and 176 µs.
        run = recorded_run("run-1")
        self.assertEqual({"bench_queue": "loaded"}, run["regimes"])
        self.assertEqual({"bench_lock": "loaded"}, recorded_run("run-2")["regimes"])


class ReportTest(unittest.TestCase):
    def testReportOpensWithTheTargetsOfEveryRun(self):
        if shutil.which("gnuplot") is None:
            self.skipTest("gnuplot is not installed")
        out = tempfile.mkdtemp()
        try:
            completed = subprocess.run(
                [sys.executable, os.path.join(HERE, "report.py"), "--raw", os.path.join(DATA, "run-1"),
                 "--raw", os.path.join(DATA, "run-2"), "--out", out],
                capture_output=True, text=True, check=False)
            self.assertEqual(0, completed.returncode, completed.stderr)
            with open(os.path.join(out, "index.md")) as handle:
                text = handle.read()
        finally:
            shutil.rmtree(out)
        self.assertLess(text.index("## Targets"), text.index("## Machine"))
        self.assertIn("| target | bound | run 1 | run 2 | min | median | max | verdict |", text)
        lock_line = next(line for line in text.splitlines() if line.startswith("| contended Lock hand-off"))
        # Run 1 probed only around bench_queue (its lock figures' regime is unknown); run 2 around bench_lock.
        self.assertIn("| 1.10× (unknown) | 1.07× (loaded) |", lock_line)
        self.assertTrue(lock_line.endswith("**met** |"), lock_line)
        self.assertIn("Run 2: **loaded**.", text)


if __name__ == "__main__":
    unittest.main()
