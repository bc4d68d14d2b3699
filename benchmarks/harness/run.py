#!/usr/bin/env python3
# Vendored from the shared CQRS benchmark harness (shared/bench/run.py, written for
# this project's peers), so that `make bench` runs on a fresh clone.  The method is
# unchanged: one process, round-robin rounds, gc.collect() between batches, paired
# /direct ratios, handler-counter checks.  Local changes: a target may set VERSION
# (the renamed python-cqrs-core 0.1.0 peer shares its distribution name with this
# repository) and LOGGERS_ON (loggers a logging-middleware target enables on purpose,
# recorded instead of warned about), and small fixes for this repository's ruff rules.
"""Side-by-side micro-benchmark of Python CQRS libraries, in one process.

    $VENV/bin/python run.py [TARGET ...] [--json PATH]

Every module in ``targets/`` (names starting with ``_`` excluded) is a target.
For each target and each measurement kind it provides:

  construct  build one command with two fields (name, email)  -- sync callable
  dispatch   send one pre-built command through the library's mediator/bus to a
             no-op handler returning an int                    -- async callable
  chain      command -> handler publishes/raises one event -> one event handler
                                                                -- async callable

the harness checks once that the real code path runs (handler counters,
fields, result), warms it up, then measures ns/op in batches, interleaving all
(target, kind) jobs round-robin over several rounds so that machine drift hits
every target alike, and reports per-job medians over the rounds and each
median as a ratio to the ``direct`` target (pydantic + direct handler call).
See README.md for details and for how to add a target.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import gc
import importlib
import importlib.metadata
import inspect
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS_DIR = HERE / "targets"
KINDS = ("construct", "dispatch", "chain")
BASELINE = "direct"

perf_counter_ns = time.perf_counter_ns


# --------------------------------------------------------------------------- #
# Logging policy: identical for every library.  A root handler that drops
# everything at WARNING level means no library prints per-operation log lines
# (and libraries that auto-configure logging when the root logger has no
# handlers, such as protean, leave it alone).  Must run before targets import.
# --------------------------------------------------------------------------- #
def _quiet_logging() -> None:
    root = logging.getLogger()
    root.addHandler(logging.NullHandler())
    root.setLevel(logging.WARNING)


# --------------------------------------------------------------------------- #
# Target discovery / loading
# --------------------------------------------------------------------------- #
def discover_targets() -> list[str]:
    names = sorted(
        p.stem for p in TARGETS_DIR.glob("*.py") if not p.stem.startswith("_")
    )
    if BASELINE in names:
        names.remove(BASELINE)
        names.insert(0, BASELINE)
    return names


def library_version(module) -> str | None:
    if getattr(module, "VERSION", None):
        return module.VERSION
    dist = getattr(module, "LIBRARY", None)
    if not dist:
        return None
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


class Job:
    """One (target, kind) pair being measured."""

    def __init__(self, target: str, kind: str, fn, is_async: bool, module) -> None:
        self.target = target
        self.kind = kind
        self.fn = fn
        self.is_async = is_async
        self.module = module
        self.ops = 0  # ops per timed batch (set by calibration)
        self.samples: list[float] = []  # ns/op, one per round
        self.invocations = 0  # every call made by the harness, timed or not
        self.counter_start: dict[str, int] = {}
        self.verify_note = ""
        self.result_repr = ""
        self.counter_check = ""

    @property
    def key(self) -> str:
        return f"{self.target}.{self.kind}"


# Which CALLS counters each kind must advance by exactly one per call.
COUNTERS = {"dispatch": ("dispatch",), "chain": ("chain_command", "chain_event")}


async def run_once(job: Job):
    job.invocations += 1
    if job.is_async:
        return await job.fn()
    return job.fn()


async def verify(job: Job, common) -> None:
    """Call the op once and check that it really did the work."""
    calls = getattr(job.module, "CALLS", None)
    keys = COUNTERS.get(job.kind, ())
    before = {k: calls[k] for k in keys} if calls is not None else {}
    result = await run_once(job)
    job.result_repr = repr(result)[:120]
    if job.kind == "construct":
        name = getattr(result, "name", None)
        email = getattr(result, "email", None)
        if (name, email) != (common.NAME, common.EMAIL):
            raise AssertionError(
                f"constructed object does not carry name/email: {result!r}"
            )
        job.verify_note = "fields ok"
        return
    if calls is None:
        raise AssertionError("target has no CALLS counters; cannot verify handler ran")
    for k in keys:
        if calls[k] != before[k] + 1:
            raise AssertionError(
                f"CALLS[{k!r}] went {before[k]} -> {calls[k]} after one call (expected +1)"
            )
    if result == common.RESULT or getattr(result, "value", None) == common.RESULT:
        job.verify_note = "handlers ran; result ok"
    else:
        job.verify_note = f"handlers ran; result {job.result_repr} != {common.RESULT}"
    # From here on, counters must advance by exactly one per harness call.
    job.counter_start = {k: calls[k] - job.invocations for k in keys}


def final_counter_check(job: Job) -> None:
    calls = getattr(job.module, "CALLS", None)
    if job.kind == "construct" or calls is None:
        job.counter_check = "n/a"
        return
    bad = [
        f"{k}: {calls[k] - job.counter_start[k]} calls vs {job.invocations} sent"
        for k in COUNTERS[job.kind]
        if calls[k] - job.counter_start[k] != job.invocations
    ]
    job.counter_check = "; ".join(bad) if bad else f"ok ({job.invocations} calls)"


# --------------------------------------------------------------------------- #
# Timing
# --------------------------------------------------------------------------- #
def time_sync(fn, n: int) -> int:
    rng = range(n)
    t0 = perf_counter_ns()
    for _ in rng:
        fn()
    return perf_counter_ns() - t0


async def time_async(fn, n: int) -> int:
    rng = range(n)
    t0 = perf_counter_ns()
    for _ in rng:
        await fn()
    return perf_counter_ns() - t0


async def time_batch(job: Job, n: int) -> int:
    job.invocations += n
    if job.is_async:
        return await time_async(job.fn, n)
    return time_sync(job.fn, n)


async def warm_up_and_calibrate(job: Job, args) -> None:
    """Run the op for ~warmup_ms, doubling the chunk size, then pick the
    batch size: at most --ops, at least --min-ops, and for slow ops only as
    many as fit in ~--batch-ms."""
    budget = args.warmup_ms * 1e6
    spent = 0
    n = 1
    per_op = None
    while True:
        elapsed = await time_batch(job, n)
        spent += elapsed
        per_op = elapsed / n
        if spent >= budget:
            break
        if n < args.ops:
            n *= 2
    fit = math.ceil(args.batch_ms * 1e6 / max(per_op, 1.0))
    job.ops = max(args.min_ops, min(args.ops, fit))


async def loop_overhead(args) -> dict[str, float]:
    """ns/op of the harness loop itself with a trivial op (included in every
    figure, not subtracted)."""
    def sync_noop():
        return 42

    async def async_noop():
        return 42

    res = {}
    for label, fn, is_async in (("sync", sync_noop, False), ("async", async_noop, True)):
        job = Job("overhead", label, fn, is_async, None)
        samples = []
        for _ in range(max(5, args.rounds // 2)):
            samples.append(await time_batch(job, args.ops) / args.ops)
        res[label] = statistics.median(samples)
    return res


def summarize(samples: list[float]) -> dict:
    med = statistics.median(samples)
    if len(samples) >= 2:
        q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    else:
        q1 = q3 = med
    return {
        "median_ns": med,
        "p25_ns": q1,
        "p75_ns": q3,
        "min_ns": min(samples),
        "max_ns": max(samples),
        "iqr_pct": 100.0 * (q3 - q1) / med if med else None,
    }


# --------------------------------------------------------------------------- #
# Main
# --------------------------------------------------------------------------- #
async def setup_jobs(names, kinds, common, report) -> list[Job]:
    jobs: list[Job] = []
    for name in names:
        info = report["targets"].setdefault(name, {})
        try:
            module = importlib.import_module(f"targets.{name}")
        except Exception as exc:  # a broken target must not stop the run
            info["error"] = f"import failed: {type(exc).__name__}: {exc}"
            print(f"[skip] {name}: {info['error']}", file=sys.stderr)
            continue
        info["library"] = getattr(module, "LIBRARY", None)
        info["version"] = library_version(module)
        info["notes"] = getattr(module, "NOTES", "")
        for kind in KINDS:
            if kind not in kinds:
                continue
            try:
                if kind == "construct":
                    factory = getattr(module, "construct", None)
                    fn = factory() if factory else None
                else:
                    factory = getattr(module, f"{kind}_setup", None)
                    fn = None
                    if factory is not None:
                        fn = factory()
                        if inspect.isawaitable(fn):
                            fn = await fn
                if fn is None:
                    info[kind] = None
                    continue
                is_async = kind != "construct"
                job = Job(name, kind, fn, is_async, module)
                await verify(job, common)
                jobs.append(job)
            except Exception as exc:  # reported, the run goes on
                info[kind] = {"error": f"{type(exc).__name__}: {exc}"}
                print(f"[fail] {name}.{kind}: {type(exc).__name__}: {exc}", file=sys.stderr)
                traceback.print_exc(file=sys.stderr)
    return jobs


def fmt_ns(v) -> str:
    if v is None:
        return "-"
    if v >= 100_000:
        return f"{v / 1000:,.0f}us"
    return f"{v:,.0f}"


def fmt_ratio(v) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}x" if v >= 10 else f"{v:.2f}x"


def fmt_pct(v) -> str:
    return "-" if v is None else f"{v:.0f}%"


def print_table(report, names, kinds) -> None:
    cols = [k for k in KINDS if k in kinds]
    head = f"{'target':<17}" + "".join(
        f"{k + ' ns':>14}{'iqr':>5}{'/direct':>9}{'iqr':>5}" for k in cols
    )
    print()
    print(head)
    print("-" * len(head))
    for name in names:
        info = report["targets"].get(name, {})
        if "error" in info:
            print(f"{name:<18}  {info['error']}")
            continue
        row = f"{name:<17}"
        for k in cols:
            r = info.get(k)
            if not r or "median_ns" not in r:
                cell = "n/a" if r is None else "FAILED"
                row += f"{cell:>14}{'':>5}{'':>9}{'':>5}"
                continue
            row += (
                f"{fmt_ns(r['median_ns']):>14}{fmt_pct(r.get('iqr_pct')):>5}"
                f"{fmt_ratio(r.get('ratio_to_direct')):>9}{fmt_pct(r.get('ratio_iqr_pct')):>5}"
            )
        print(row)
    print()
    print("ns = median over rounds of ns/op (us = microseconds); /direct = median over rounds of")
    print("(this ns/op / direct's ns/op in the same round); iqr = interquartile range of the")
    print("per-round values as % of their median; n/a = the library cannot do it.")


async def amain(args) -> int:
    sys.path.insert(0, str(HERE))
    common = importlib.import_module("targets._common")

    available = discover_targets()
    if args.list:
        print("\n".join(available))
        return 0
    names = args.targets or available
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"unknown target(s): {', '.join(unknown)}; available: {', '.join(available)}",
              file=sys.stderr)
        return 2
    if BASELINE not in names and not args.no_baseline:
        names = [BASELINE, *names]
    kinds = set(args.kinds.split(",")) if args.kinds else set(KINDS)

    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})

    started = time.time()
    report: dict = {
        "meta": {
            "started": _dt.datetime.fromtimestamp(started, _dt.UTC).isoformat(),
            "python": sys.version.split()[0],
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "affinity": (
                sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
            ),
            "args": vars(args),
            "gc_between_batches": not args.no_gc,
        },
        "targets": {},
    }

    jobs = await setup_jobs(names, kinds, common, report)
    # Transparency: any logger a library left enabled below WARNING makes it
    # pay for building log records the others skip.
    # A target measuring a logging integration declares the loggers it enables on
    # purpose in LOGGERS_ON (recorded, not warned about).
    on_purpose = {
        lg: job.target for job in jobs for lg in getattr(job.module, "LOGGERS_ON", ())
    }
    loud = {
        n: logging.getLevelName(lg.level)
        for n, lg in logging.root.manager.loggerDict.items()
        if isinstance(lg, logging.Logger) and lg.level and lg.level < logging.WARNING
        and n not in on_purpose
    }
    report["meta"]["loggers_below_warning"] = loud
    report["meta"]["loggers_enabled_by_targets"] = on_purpose
    for n, lvl in loud.items():
        print(f"WARNING logger {n!r} is at {lvl} (harness policy is WARNING for all)",
              file=sys.stderr)
    if not jobs:
        print("nothing to measure", file=sys.stderr)
        return 1

    print(f"warming up {len(jobs)} jobs ...", file=sys.stderr)
    for job in jobs:
        await warm_up_and_calibrate(job, args)
    report["meta"]["loop_overhead_ns"] = await loop_overhead(args)

    gc.collect()
    if hasattr(gc, "freeze"):
        gc.freeze()  # setup objects out of the way of later collections

    print(f"measuring: {args.rounds} rounds x {len(jobs)} jobs, round-robin ...", file=sys.stderr)
    for rnd in range(args.rounds):
        # Rotate the starting job every round so no job always runs right
        # after the same neighbour (or first, on a cold cache).
        shift = rnd % len(jobs)
        for job in jobs[shift:] + jobs[:shift]:
            if not args.no_gc:
                gc.collect()
            elapsed = await time_batch(job, job.ops)
            job.samples.append(elapsed / job.ops)
        if args.verbose:
            print(f"  round {rnd + 1}/{args.rounds} done", file=sys.stderr)

    for job in jobs:
        final_counter_check(job)

    baseline = {j.kind: j for j in jobs if j.target == BASELINE}
    for job in jobs:
        stats = summarize(job.samples)
        base = baseline.get(job.kind)
        if base is not None:
            # Paired ratio: this job's ns/op over direct's ns/op *in the same
            # round*, median over rounds.  Both ran within one round (well
            # under a second apart), so slow machine drift cancels out.
            paired = [s / b for s, b in zip(job.samples, base.samples, strict=True)]
            r_med = statistics.median(paired)
            if len(paired) >= 2:
                r_q1, _, r_q3 = statistics.quantiles(paired, n=4, method="inclusive")
            else:
                r_q1 = r_q3 = r_med
            stats["ratio_to_direct"] = r_med
            stats["ratio_iqr_pct"] = 100.0 * (r_q3 - r_q1) / r_med if r_med else None
            stats["ratio_of_medians"] = stats["median_ns"] / statistics.median(base.samples)
            # Same pairing, as a difference: ns/op this library adds over direct.
            stats["delta_vs_direct_ns"] = statistics.median(
                [s - b for s, b in zip(job.samples, base.samples, strict=True)]
            )
        else:
            stats["ratio_to_direct"] = None
        stats.update(
            ops_per_batch=job.ops,
            rounds=len(job.samples),
            samples_ns=[round(s, 1) for s in job.samples],
            verification=job.verify_note,
            counter_check=job.counter_check,
            first_result=job.result_repr,
        )
        report["targets"][job.target][job.kind] = stats

    report["meta"]["duration_s"] = round(time.time() - started, 1)

    print_table(report, names, kinds)
    ov = report["meta"]["loop_overhead_ns"]
    print(f"harness loop overhead (included above): sync {ov['sync']:.0f} ns, "
          f"async {ov['async']:.0f} ns per op; run took {report['meta']['duration_s']} s")
    problems = [
        f"{j.key}: {j.counter_check}" for j in jobs if not j.counter_check.startswith(("ok", "n/a"))
    ] + [f"{j.key}: {j.verify_note}" for j in jobs if "!=" in j.verify_note]
    for p in problems:
        print(f"WARNING {p}")

    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, default=str))  # noqa: ASYNC240 - after timing
        print(f"wrote {path}")
    failed = [
        f"{name}: {info['error']}" for name, info in report["targets"].items() if "error" in info
    ] + [
        f"{name}.{k}: {info[k]['error']}"
        for name, info in report["targets"].items()
        for k in KINDS
        if isinstance(info.get(k), dict) and "error" in info[k]
    ]
    return 1 if failed or problems else 0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("targets", nargs="*", help="target module names (default: all in targets/)")
    p.add_argument("--json", metavar="PATH",
                   help="write full results (incl. per-round samples) here")
    p.add_argument("--rounds", type=int, default=20, help="round-robin rounds (default 20)")
    p.add_argument("--ops", type=int, default=2000,
                   help="max ops per timed batch (default 2000)")
    p.add_argument("--batch-ms", type=float, default=20.0,
                   help="slow ops get only as many ops per batch as fit in this many ms "
                        "(default 20)")
    p.add_argument("--min-ops", type=int, default=5, help="min ops per batch (default 5)")
    p.add_argument("--warmup-ms", type=float, default=150.0,
                   help="warm-up time per job before calibration (default 150)")
    p.add_argument("--kinds", help="comma list of construct,dispatch,chain (default all)")
    p.add_argument("--no-baseline", action="store_true",
                   help=f"do not add the '{BASELINE}' target automatically")
    p.add_argument("--no-gc", action="store_true",
                   help="skip gc.collect() between batches")
    p.add_argument("--cpu", type=int, help="pin the process to this CPU (sched_setaffinity)")
    p.add_argument("--list", action="store_true", help="list targets and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    _quiet_logging()
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
