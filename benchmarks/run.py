"""Benchmark python-cqrs-core against its peers and check the issues' speed targets.

    .bench-venv/bin/python benchmarks/run.py [TARGET ...] [harness options]
    make bench                          # sets up .bench-venv/, then runs this

Three steps, one process:

1. The vendored harness (``benchmarks/harness/run.py``, method in its docstring and
   in ``docs/performance.md``) measures every target in ``benchmarks/harness/targets/``
   round-robin, and writes its full JSON to ``benchmarks/results/``.
2. Per-op memory of ``ours`` vs ``direct`` (and ``ours_sqlite``): bytes allocated at
   the peak of one op (``tracemalloc``) and blocks retained per op
   (``sys.getallocatedblocks``).
3. A summary computed from that JSON: each speed target of the issues, met or not,
   plus the per-dispatch overhead of every middleware, as plain text and as a
   markdown table for the README.  All comparisons are *paired by round*: the median
   over rounds of (ours / peer) or (middleware - ours) with both timed in the same
   round, which cancels the machine's slow drift.

Exit status: 1 when the harness reported a failure (import, check, counters), else 0;
an unmet speed target is reported, not an error.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HARNESS = HERE / "harness"
RESULTS = HERE / "results"


def _load_harness() -> Any:
    # benchmarks/ is sys.path[0] (this script's directory), so ``import run`` would
    # import this file: load the harness under its own name.
    spec = importlib.util.spec_from_file_location("bench_harness", HARNESS / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- #
# Targets of the issues
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Goal:
    """``target``'s ``kind`` divided by ``reference``'s must be at most ``limit``."""

    label: str
    kind: str
    target: str
    reference: str
    limit: float | None  # None: reported, no target
    issue: str


GOALS = (
    Goal("construct vs python-cqrs-core 0.1.0", "construct", "ours", "pcc_peer", 0.6, "#3"),
    Goal("dispatch vs direct", "dispatch", "ours", "direct", 2.5, "#4"),
    Goal("dispatch vs mediatr 1.3.2", "dispatch", "ours", "mediatr", None, "#4"),
    Goal("dispatch vs bare (calibration)", "dispatch", "ours", "bare", None, "#4"),
    Goal("bare vs direct (calibration)", "dispatch", "bare", "direct", None, "#4"),
    Goal("chain vs cqrs-bus 0.3.1", "chain", "ours", "cqrs_bus", 0.12, "#4"),
    Goal("chain vs direct", "chain", "ours", "direct", None, "#4"),
    Goal("chain + SQLite store vs protean 0.18.0", "chain", "ours_sqlite", "protean", 0.01, "#5"),
    Goal(
        "same, durability=async, 100 per commit",
        "chain",
        "ours_sqlite_async",
        "protean",
        0.01,
        "#5",
    ),
)

MIDDLEWARE_PREFIX = "ours_mw_"


def _samples(report: dict, target: str, kind: str) -> list[float] | None:
    info = report["targets"].get(target) or {}
    r = info.get(kind)
    return r.get("samples_ns") if isinstance(r, dict) else None


def _median_ns(report: dict, target: str, kind: str) -> float | None:
    info = report["targets"].get(target) or {}
    r = info.get(kind)
    return r.get("median_ns") if isinstance(r, dict) else None


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a[i] / b[i] (both timed in round i)."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def paired_delta(a: list[float], b: list[float]) -> float:
    """Median over rounds of a[i] - b[i], in ns."""
    return statistics.median(x - y for x, y in zip(a, b, strict=True))


def evaluate(report: dict, mw_report: dict | None = None) -> dict[str, Any]:
    """The summary: goals, middleware overheads, store growth (JSON-ready).

    Middleware overheads come from ``mw_report`` (the middleware pass) when given.
    """
    goals = []
    for g in GOALS:
        a, b = _samples(report, g.target, g.kind), _samples(report, g.reference, g.kind)
        entry: dict[str, Any] = {
            "label": g.label,
            "issue": g.issue,
            "kind": g.kind,
            "target": g.target,
            "reference": g.reference,
            "limit": g.limit,
            "target_ns": _median_ns(report, g.target, g.kind),
            "reference_ns": _median_ns(report, g.reference, g.kind),
        }
        if a and b:
            entry["ratio"] = paired_ratio(a, b)
            entry["met"] = None if g.limit is None else entry["ratio"] <= g.limit
        else:
            entry["ratio"] = None
            entry["met"] = None
            entry["missing"] = [t for t, s in ((g.target, a), (g.reference, b)) if not s]
        goals.append(entry)

    middleware = []
    mw = report if mw_report is None else mw_report
    base = _samples(mw, "ours", "dispatch")
    for name in sorted(mw["targets"]):
        if not name.startswith(MIDDLEWARE_PREFIX):
            continue
        s = _samples(mw, name, "dispatch")
        info = mw["targets"][name]
        entry = {"target": name, "notes": info.get("notes", ""), "error": info.get("error")}
        if s and base:
            entry.update(
                ns=_median_ns(mw, name, "dispatch"),
                added_ns=paired_delta(s, base),
                ratio_to_ours=paired_ratio(s, base),
            )
        middleware.append(entry)

    growth = None
    store = _samples(report, "ours_sqlite", "chain")
    direct = _samples(report, "direct", "chain")
    if store and direct and len(store) >= 6:
        # The store grows by every op; per-op cost must not.  Compare the first and
        # the last third of the rounds, each paired with direct's chain of its round.
        ratios = [s / d for s, d in zip(store, direct, strict=True)]
        third = len(ratios) // 3
        first, last = statistics.median(ratios[:third]), statistics.median(ratios[-third:])
        info = report["targets"]["ours_sqlite"]["chain"]
        growth = {
            "first_third_vs_direct": first,
            "last_third_vs_direct": last,
            "change_pct": 100.0 * (last - first) / first,
            "ops_recorded": info.get("ops_per_batch", 0) * len(store),
        }
    return {"goals": goals, "middleware": middleware, "store_growth": growth}


# --------------------------------------------------------------------------- #
# Per-op memory
# --------------------------------------------------------------------------- #
async def measure_memory(targets: list[str], kinds: set[str], n: int = 2000) -> dict:
    """Per op: peak bytes allocated during one op, cyclic garbage, leaks.

    ``peak_bytes``: ``tracemalloc`` peak while one op runs minus the traced size
    before it, median over ops: what the op allocates at its high-water mark
    (temporaries included).  ``garbage_blocks``: change of ``sys.getallocatedblocks()``
    per op over ``n`` ops with the collector off: blocks that only the cycle
    collector frees (plus leaks); 0 when reference counting frees everything.
    ``leaked_blocks``: the same after a ``gc.collect()``: what the op keeps.
    """
    out: dict[str, dict] = {}
    for name in targets:
        module = sys.modules.get(f"targets.{name}")
        if module is None:
            continue
        for kind in ("construct", "dispatch", "chain"):
            if kind not in kinds:
                continue
            if kind == "construct":
                factory = getattr(module, "construct", None)
                fn = factory() if factory else None
            else:
                factory = getattr(module, f"{kind}_setup", None)
                fn = await factory() if factory else None
            if fn is None:
                continue
            is_async = kind != "construct"

            async def op(fn: Callable[[], Any] = fn, is_async: bool = is_async) -> None:
                if is_async:
                    await fn()
                else:
                    fn()

            for _ in range(200):  # warm caches (compiled routes, id blocks, ...)
                await op()
            gc.collect()
            gc.disable()
            try:
                before = sys.getallocatedblocks()
                for _ in range(n):
                    await op()
                garbage = (sys.getallocatedblocks() - before) / n
                gc.collect()
                leaked = (sys.getallocatedblocks() - before) / n
                tracemalloc.start()
                peaks = []
                for _ in range(min(n, 500)):
                    current, _ = tracemalloc.get_traced_memory()
                    tracemalloc.reset_peak()
                    await op()
                    peaks.append(tracemalloc.get_traced_memory()[1] - current)
                tracemalloc.stop()
            finally:
                gc.enable()
            counters = getattr(module, "CALLS", None)
            out.setdefault(name, {})[kind] = {
                "peak_bytes": statistics.median(peaks),
                "garbage_blocks": garbage,
                "leaked_blocks": leaked,
                "ops": n,
                "calls": dict(counters) if counters else None,
            }
    return out


# --------------------------------------------------------------------------- #
# SQLite store: per-op cost against store size
# --------------------------------------------------------------------------- #
async def store_growth_check(prefill: int, ops: int = 200, rounds: int = 7) -> dict:
    """Chain cost on an empty store vs one pre-filled with ``prefill`` records.

    Two stores, two recorded buses (``ours_sqlite``'s), timed round-robin in
    batches of ``ops`` chains; the figure is the median over rounds of the
    per-round ratio (filled / empty).  Flat per-op cost means a ratio near 1.
    The filled store gets synthetic chains (a command and the event it caused,
    each its own correlation) written with ``store.append`` in batches.
    """
    import dataclasses
    from datetime import UTC, datetime

    from python_cqrs_core import uuid4
    from python_cqrs_core.store import HandlerOutcome, MessageRecord, open_store

    module = importlib.import_module("targets.ours_sqlite")
    common = importlib.import_module("targets._common")
    ours = importlib.import_module("targets.ours")
    now = datetime.now(UTC)
    payload = {"name": common.NAME, "email": common.EMAIL}

    def chain_records() -> list[MessageRecord]:
        command_id, event_id = uuid4(), uuid4()
        command = MessageRecord(
            message_id=command_id,
            kind="command",
            message_type="RegisterUser",
            correlation_id=str(command_id),
            causation_id=None,
            requested_by=None,
            requested_at=now,
            recorded_at=now,
            payload=payload,
            outcome="succeeded",
            handlers=(HandlerOutcome("RegisterUserHandler", "succeeded", 0.02, None, None),),
            error_type=None,
            error_message=None,
            duration_ms=0.03,
            headers={},
        )
        event = dataclasses.replace(
            command,
            message_id=event_id,
            kind="event",
            message_type="UserRegistered",
            causation_id=str(command_id),
            handlers=(HandlerOutcome("UserRegisteredHandler", "succeeded", 0.01, None, None),),
        )
        return [command, event]

    empty, filled = await module.temporary_store(), await module.temporary_store()
    t0 = time.perf_counter()
    batch: list[MessageRecord] = []
    for _ in range(prefill // 2):
        batch += chain_records()
        if len(batch) >= 10_000:
            await filled.append(batch)
            batch = []
    if batch:
        await filled.append(batch)
    fill_s = time.perf_counter() - t0
    # Reopen: closing checkpoints the WAL the bulk load left behind, so both stores
    # start from a checkpointed file, as a store in service would be.
    await filled.close()
    filled = await open_store(filled.url)

    def op_for(store: Any) -> Callable[[], Any]:
        bus, _ = module.recorded_chain(store, common.new_calls())
        send, command = bus.send, ours.RegisterUser

        async def op() -> Any:
            return await send(command(name=common.NAME, email=common.EMAIL))

        return op

    jobs = {"empty": op_for(empty), "filled": op_for(filled)}
    samples: dict[str, list[float]] = {"empty": [], "filled": []}
    for op in jobs.values():  # warm up
        for _ in range(50):
            await op()
    for rnd in range(rounds):
        order = list(jobs) if rnd % 2 == 0 else list(reversed(jobs))
        for label in order:
            gc.collect()
            op = jobs[label]
            t = time.perf_counter_ns()
            for _ in range(ops):
                await op()
            samples[label].append((time.perf_counter_ns() - t) / ops)
    await empty.close()
    await filled.close()
    return {
        "prefill_records": prefill,
        "prefill_seconds": round(fill_s, 2),
        "prefill_records_per_s": round(prefill / fill_s) if fill_s else None,
        "empty_ns": statistics.median(samples["empty"]),
        "filled_ns": statistics.median(samples["filled"]),
        "filled_over_empty": paired_ratio(samples["filled"], samples["empty"]),
        "ops_per_round": ops,
        "rounds": rounds,
    }


# --------------------------------------------------------------------------- #
# Output
# --------------------------------------------------------------------------- #
def _fmt_ns(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1_000_000:
        return f"{v / 1e6:.2f} ms"
    if v >= 1000:
        return f"{v / 1000:.2f} us"
    return f"{v:.0f} ns"


def _fmt_ratio(v: float | None) -> str:
    if v is None:
        return "-"
    if v < 0.1:
        return f"{v:.4f}x"
    if v < 1:
        return f"{v:.3f}x"
    return f"{v:.2f}x" if v < 10 else f"{v:.1f}x"


def _met(entry: dict) -> str:
    if entry.get("ratio") is None:
        return "not measured"
    if entry["limit"] is None:
        return "(reference)"
    return "MET" if entry["met"] else "NOT MET"


def print_summary(summary: dict, memory: dict, report: dict) -> None:
    print()
    print("== Speed targets (paired per round: median over rounds of target / reference)")
    for g in summary["goals"]:
        limit = "" if g["limit"] is None else f"  target <= {g['limit']}x"
        print(
            f"  {g['label']:<40} {g['issue']:<3} {_fmt_ratio(g['ratio']):>9}  "
            f"({_fmt_ns(g['target_ns'])} vs {_fmt_ns(g['reference_ns'])})"
            f"{limit}  {_met(g)}"
        )
        if g.get("missing"):
            print(f"  {'':<40}     missing: {', '.join(g['missing'])}")

    if summary["middleware"]:
        print()
        print("== Middleware overhead per dispatch (median over rounds of mw - ours, same round)")
        for m in summary["middleware"]:
            if "added_ns" not in m:
                print(f"  {m['target']:<26} not measured {m.get('error') or ''}")
                continue
            print(
                f"  {m['target']:<26} +{m['added_ns']:>7,.0f} ns  "
                f"({_fmt_ns(m['ns'])}/dispatch, {m['ratio_to_ours']:.2f}x ours)"
            )

    growth = summary["store_growth"]
    if growth:
        print()
        print(
            f"== SQLite store growth: ours_sqlite chain / direct chain went "
            f"{growth['first_third_vs_direct']:.2f}x -> {growth['last_third_vs_direct']:.2f}x "
            f"({growth['change_pct']:+.0f}%) from the first to the last third of the rounds, "
            f"over ~{growth['ops_recorded']:,} timed chains"
        )

    size = summary.get("store_size_check")
    if size:
        print()
        print(
            f"== SQLite store size: chain + store {_fmt_ns(size['empty_ns'])} on a new store, "
            f"{_fmt_ns(size['filled_ns'])} with {size['prefill_records']:,} records: "
            f"{size['filled_over_empty']:.2f}x (paired over {size['rounds']} rounds; "
            f"pre-filled at {size['prefill_records_per_s']:,} records/s)"
        )

    if memory:
        print()
        print("== Memory per op (peak = tracemalloc high-water mark of one op; garbage =")
        print("   blocks left for the cycle collector; leaked = blocks kept after gc.collect())")
        for name, kinds in memory.items():
            for kind, m in kinds.items():
                print(
                    f"  {name + '.' + kind:<24} peak {m['peak_bytes']:>8,.0f} B   "
                    f"garbage {m['garbage_blocks']:>6.2f}   leaked {m['leaked_blocks']:>6.2f} "
                    "blocks/op"
                )

    print()
    print("== Markdown (README performance section)")
    print()
    print(markdown_table(summary, memory, report))


def markdown_table(summary: dict, memory: dict, report: dict) -> str:
    lines = [
        "| operation | python-cqrs-core | compared with | ratio | target | |",
        "|---|---:|---|---:|---:|---|",
    ]
    names = {
        "pcc_peer": "python-cqrs-core 0.1.0",
        "direct": "direct call (no library)",
        "mediatr": "mediatr 1.3.2",
        "bare": "bare dict + ContextVar",
        "cqrs_bus": "cqrs-bus 0.3.1",
        "protean": "protean 0.18.0 (in-memory)",
    }
    for g in summary["goals"]:
        if g["target"] not in ("ours", "ours_sqlite", "ours_sqlite_async"):
            continue
        what = g["kind"] + {
            "ours_sqlite": " + SQLite store",
            "ours_sqlite_async": " + SQLite store, async durability",
        }.get(g["target"], "")
        ref = f"{names.get(g['reference'], g['reference'])}, {_fmt_ns(g['reference_ns'])}"
        limit = "" if g["limit"] is None else f"<= {g['limit']}x"
        status = {"MET": "met", "NOT MET": "**not met**"}.get(_met(g), "")
        lines.append(
            f"| {what} | {_fmt_ns(g['target_ns'])} | {ref} | {_fmt_ratio(g['ratio'])} "
            f"| {limit} | {status} |"
        )
    if summary["middleware"]:
        lines += ["", "| middleware (dispatch) | added per dispatch |", "|---|---:|"]
        for m in summary["middleware"]:
            if "added_ns" in m:
                label = m["target"].removeprefix(MIDDLEWARE_PREFIX)
                lines.append(f"| {label} | +{m['added_ns']:,.0f} ns |")
    if memory:
        lines += [
            "",
            "| memory per op | peak allocated | cyclic garbage | leaked |",
            "|---|---:|---:|---:|",
        ]
        for name, kinds in memory.items():
            for kind, m in kinds.items():
                lines.append(
                    f"| {name} {kind} | {m['peak_bytes']:,.0f} B "
                    f"| {m['garbage_blocks']:.1f} blocks | {m['leaked_blocks']:.2f} blocks |"
                )
    meta = report["meta"]
    lines += [
        "",
        f"CPython {meta['python']}, {meta['cpu_count']} CPUs, {meta['args']['rounds']} rounds; "
        "ratios are medians over rounds of per-round ratios (`make bench`).",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- #
# Main
# --------------------------------------------------------------------------- #
HARNESS_OPTIONS: dict[str, type] = {
    "--rounds": int,
    "--ops": int,
    "--batch-ms": float,
    "--min-ops": int,
    "--warmup-ms": float,
    "--kinds": str,
    "--cpu": int,
    "--no-gc": bool,
    "--verbose": bool,
}


def _kinds(harness_argv: list[str]) -> set[str]:
    """The kinds a harness command line measures (``--kinds a,b`` or ``--kinds=a,b``)."""
    kinds = "construct,dispatch,chain"
    for i, arg in enumerate(harness_argv):
        if arg == "--kinds" and i + 1 < len(harness_argv):
            kinds = harness_argv[i + 1]
        elif arg.startswith("--kinds="):
            kinds = arg.split("=", 1)[1]
    return set(kinds.split(","))


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="The harness options are passed on; see benchmarks/harness/run.py --help.",
    )
    p.add_argument(
        "targets",
        nargs="*",
        help="harness targets (default: every library, then ours with each middleware)",
    )
    p.add_argument("--json", metavar="PATH", help="results JSON (default benchmarks/results/)")
    p.add_argument("--no-memory", action="store_true", help="skip the per-op memory step")
    p.add_argument(
        "--store-prefill",
        type=int,
        default=100_000,
        metavar="N",
        help="records in the pre-filled store of the SQLite growth check (0: skip the check)",
    )
    p.add_argument(
        "--summary-only",
        metavar="JSON",
        help="print the summary of an earlier results JSON, measure nothing",
    )
    harness = p.add_argument_group("harness options (passed on)")
    for flag, kind in HARNESS_OPTIONS.items():
        if kind is bool:
            harness.add_argument(flag, action="store_true")
        else:
            harness.add_argument(flag, type=kind)
    args = p.parse_args(argv)
    passed: list[str] = []
    for flag, kind in HARNESS_OPTIONS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if kind is bool and value:
            passed.append(flag)
        elif kind is not bool and value is not None:
            passed += [flag, str(value)]
    return args, passed


def main(argv: list[str] | None = None) -> int:
    args, harness_argv = parse_args(argv)
    if args.summary_only:
        report = json.loads(Path(args.summary_only).read_text())
        summary = report.get("summary") or evaluate(report, report.get("middleware_pass"))
        print_summary(summary, report.get("memory") or {}, report)
        return 0

    started = time.perf_counter()
    harness = _load_harness()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(args.json) if args.json else RESULTS / f"bench-{stamp}.json"
    mw_path = path.with_name(path.stem + "-middleware.json")

    # Two passes unless targets are named: the libraries (the issues' ratios), then
    # ``ours`` with each middleware (dispatch only).  Separate passes keep what the
    # integrations leave in the process (Sentry sets ContextVars in the task's
    # context, which makes every ContextVar.set slower) out of the library figures.
    mw_report = None
    if args.targets:
        status = harness.main([*args.targets, *harness_argv, "--json", str(path)])
    else:
        everything = harness.discover_targets()
        libraries = [t for t in everything if not t.startswith(MIDDLEWARE_PREFIX)]
        middleware = [t for t in everything if t.startswith(MIDDLEWARE_PREFIX)]
        print("== pass 1: libraries", file=sys.stderr)
        status = harness.main([*libraries, *harness_argv, "--json", str(path)])
        if middleware and _kinds(harness_argv) & {"dispatch"}:
            print("\n== pass 2: middleware (dispatch)", file=sys.stderr)
            argv = [*harness_argv, "--kinds", "dispatch", "--json", str(mw_path)]
            status |= harness.main(["ours", *middleware, *argv])
            mw_report = json.loads(mw_path.read_text())
            mw_path.unlink()
    report = json.loads(path.read_text())
    if mw_report is not None:
        report["middleware_pass"] = mw_report

    memory: dict = {}
    if not args.no_memory:
        measured = [t for t in ("direct", "ours", "ours_sqlite") if t in report["targets"]]
        kinds = set((report["meta"]["args"].get("kinds") or "construct,dispatch,chain").split(","))
        memory = asyncio.run(measure_memory(measured, kinds))

    summary = evaluate(report, mw_report)
    if args.store_prefill and "chain" in (report["targets"].get("ours_sqlite") or {}):
        summary["store_size_check"] = asyncio.run(store_growth_check(args.store_prefill))
    report["summary"] = summary
    report["memory"] = memory
    report["meta"]["suite_duration_s"] = round(time.perf_counter() - started, 1)
    path.write_text(json.dumps(report, indent=2, default=str))
    (RESULTS / "latest.json").write_text(path.read_text())
    print_summary(summary, memory, report)
    print()
    print(
        f"results: {path} (also {RESULTS / 'latest.json'}); "
        f"suite took {report['meta']['suite_duration_s']} s"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
