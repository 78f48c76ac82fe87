"""`python -m mmnar_core fuzz [--seconds S] [--targets a,b]`: coverage-guided fuzzing of every input parser and
validator (mmnar_lab.fuzz_targets) for a bounded time, as a benchmark: executions, coverage, crashes per target.

Each target runs in its own process under atheris (libFuzzer for Python): the code under test is instrumented
as it is imported (Target.instrument), the corpus starts from the target's seeds plus a token dictionary, and
libFuzzer stops after `--seconds`. The harness catches every exception itself, so one run counts every crash
instead of stopping at the first; each distinct crash (exception type + innermost frame of mmnar_core, or the
property that broke) is written once to `--crash-dir` as `<target>-<id>.bin` (the input) and `.txt` (the
traceback). A hang (`Target.timeout_s`) or running out of memory ends the target's run early; libFuzzer writes
that input to the crash folder too. Without atheris, `--engine random` mutates the seeds without coverage
feedback. `--replay FILE_OR_DIR` runs saved inputs through their targets again (a regression check).
See docs/fuzzing.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from mmnar_core.atomic_write import write_text_atomic
from mmnar_lab.fuzz_targets import TARGETS, PropertyViolation, Target

DEFAULT_SECONDS = 60.0
DEFAULT_CRASH_DIR = "test-output/fuzz-crashes"
_STATUS = re.compile(r"^#(\d+)\s+\w+\s+(?:cov: (\d+) ft: (\d+) )?corp: (\d+)/(\S+).*?exec/s: (\d+)")


# ------------------------------------------------------------------------------------------------ one target's run
class Recorder:
    """Counts outcomes and crashes of one target; writes each distinct crash once and the stats file often."""

    def __init__(self, target: Target, crash_dir: Path, stats_path: Path | None, engine: str):
        self.target = target
        self.crash_dir = crash_dir
        self.stats_path = stats_path
        self.started = time.monotonic()
        self.last_write = 0.0
        self.stats = {
            "target": target.name,
            "engine": engine,
            "executions": 0,
            "accepted": 0,
            "refused": 0,
            "skipped": 0,
            "crashes": 0,
            "unique_crashes": {},
            "seconds": 0.0,
        }

    def run(self, context, data: bytes) -> None:
        self.stats["executions"] += 1
        try:
            outcome = self.target.run(context, data)
        except Exception as error:  # noqa: BLE001 - every exception but the documented ones is a finding
            self.crash(data, error)
        else:
            self.stats[outcome if outcome in ("accepted", "refused", "skipped") else "accepted"] += 1
        now = time.monotonic()
        if now - self.last_write > 1.0:
            self.write()

    def crash(self, data: bytes, error: BaseException) -> None:
        self.stats["crashes"] += 1
        signature = crash_signature(error)
        crash_id = hashlib.sha1(f"{self.target.name}|{signature}".encode()).hexdigest()[:12]
        known = self.stats["unique_crashes"].get(crash_id)
        if known:
            known["count"] += 1
            return
        self.crash_dir.mkdir(parents=True, exist_ok=True)
        stem = self.crash_dir / f"{self.target.name}-{crash_id}"
        stem.with_suffix(".bin").write_bytes(data)
        stem.with_suffix(".txt").write_text(
            f"target: {self.target.name}\nsignature: {signature}\ninput: {stem.with_suffix('.bin').name} "
            f"({len(data)} bytes)\nreplay: python -m mmnar_core fuzz --replay {stem.with_suffix('.bin')}\n\n"
            + "".join(traceback.format_exception(type(error), error, error.__traceback__)),
            encoding="utf-8",
        )
        self.stats["unique_crashes"][crash_id] = {
            "signature": signature,
            "count": 1,
            "input": str(stem.with_suffix(".bin")),
        }
        self.write()

    def write(self) -> None:
        self.last_write = time.monotonic()
        self.stats["seconds"] = round(self.last_write - self.started, 3)
        if self.stats_path is not None:
            write_text_atomic(self.stats_path, json.dumps(self.stats))


def crash_signature(error: BaseException) -> str:
    """What makes two crashes the same: the exception type and the innermost frame in mmnar_core (else the
    innermost frame); for a broken property, its message without numbers."""
    if isinstance(error, PropertyViolation):
        return "PropertyViolation: " + re.sub(r"\d+", "N", str(error))[:120]
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "mmnar_core" in f.filename and not f.filename.endswith(("fuzz.py", "fuzz_targets.py"))]
    frame = (ours or frames or [None])[-1]
    where = f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}" if frame else "?"
    return f"{type(error).__name__} at {where}"


def write_seeds(target: Target, context, corpus: Path) -> int:
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = target.seeds(context)
    for seed in seeds:
        (corpus / f"seed-{hashlib.sha1(seed).hexdigest()[:16]}").write_bytes(seed[: target.max_len])
    return len(seeds)


def write_dictionary(target: Target, path: Path) -> Path | None:
    if not target.dictionary:
        return None
    lines = []
    for token in target.dictionary:
        escaped = "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\x{b:02x}" for b in token)
        lines.append(f'"{escaped}"')
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


def atheris_worker(target: Target, seconds: float, crash_dir: Path, stats_path: Path, corpus: Path) -> None:
    """Runs in its own process: never returns (libFuzzer exits when the time is up)."""
    import atheris

    quiet()
    with atheris.instrument_imports(include=list(target.instrument)):
        context = target.setup()
    write_seeds(target, context, corpus)
    dictionary = write_dictionary(target, corpus.parent / f"{target.name}.dict")
    recorder = Recorder(target, crash_dir, stats_path, "atheris")
    recorder.write()
    crash_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.argv[0],
        str(corpus),
        f"-max_total_time={max(1, int(round(seconds)))}",
        f"-timeout={target.timeout_s}",
        f"-max_len={target.max_len}",
        "-rss_limit_mb=6144",
        f"-artifact_prefix={crash_dir}/{target.name}-libfuzzer-",
        "-print_final_stats=1",
        "-print_pcs=0",
    ]
    if dictionary is not None:
        argv.append(f"-dict={dictionary}")
    atheris.Setup(argv, lambda data: recorder.run(context, data))
    atheris.Fuzz()


def random_worker(target: Target, seconds: float, crash_dir: Path, stats_path: Path | None, seed: int = 0) -> dict:
    """No coverage feedback: each input is a seed changed by a few random byte edits, splices and tokens."""
    quiet()
    context = target.setup()
    try:
        seeds = [s[: target.max_len] for s in target.seeds(context)] or [b""]
        recorder = Recorder(target, crash_dir, stats_path, "random")
        rng = random.Random(seed)
        deadline = time.monotonic() + seconds
        for data in seeds:
            recorder.run(context, data)
        while time.monotonic() < deadline:
            recorder.run(context, mutate(rng, rng.choice(seeds), seeds, target.dictionary, target.max_len))
        recorder.write()
        return recorder.stats
    finally:
        target.teardown(context)


def mutate(rng: random.Random, data: bytes, seeds: list[bytes], tokens, max_len: int) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        action = rng.randrange(7)
        at = rng.randrange(len(out) + 1)
        if action == 0 and out:
            out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif action == 1 and out:
            out[min(at, len(out) - 1)] = rng.choice((0, 0xFF, 0x7F, 0x80, ord("9"), ord('"'), ord(",")))
        elif action == 2:
            del out[at : at + rng.randint(1, 64)]
        elif action == 3:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif action == 4 and tokens:
            out[at:at] = rng.choice(tokens)
        elif action == 5:
            other = rng.choice(seeds)
            start = rng.randrange(len(other) + 1)
            out[at:] = other[start : start + rng.randint(0, 256)] + out[at:]
        else:
            out = out[:at]
    return bytes(out[:max_len])


# ------------------------------------------------------------------------------------------------ the command
def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "fuzz",
        help="coverage-guided fuzzing of the input parsers, bundle loader and server for a bounded time",
        description="Runs every target (or --targets) for --seconds under atheris and reports executions, "
        "coverage and crashes per target; crashing inputs go to --crash-dir. Exit status 1 if any target "
        "crashed. See docs/fuzzing.md.",
    )
    parser.add_argument(
        "--seconds", type=float, default=DEFAULT_SECONDS, help=f"fuzzing time per target (default {DEFAULT_SECONDS:g})"
    )
    parser.add_argument("--targets", default="all", help=f"comma-separated, or all: {', '.join(TARGETS)}")
    parser.add_argument(
        "--crash-dir",
        default=DEFAULT_CRASH_DIR,
        help=f"where crashing inputs are written (default ./{DEFAULT_CRASH_DIR})",
    )
    parser.add_argument(
        "--corpus",
        default=None,
        help="keep each target's corpus in CORPUS/<target> (default: a "
        "temporary folder, so every run starts from the seeds)",
    )
    parser.add_argument(
        "--engine",
        choices=("auto", "atheris", "random"),
        default="auto",
        help="atheris (coverage-guided) when installed, else random mutations of the seeds",
    )
    parser.add_argument("--json", default=None, help="also write the report as JSON to this file")
    parser.add_argument(
        "--replay",
        nargs="+",
        default=None,
        metavar="FILE_OR_DIR",
        help="run saved inputs (<target>-*.bin) through their targets again, then exit",
    )
    parser.set_defaults(func=run_command)


def quiet() -> None:
    """Decoders warn and log about the broken inputs they are fed on purpose; only crashes matter here."""
    import logging
    import warnings

    warnings.simplefilter("ignore")
    for name in ("pydicom", "PIL", "mmnar_core", "python_multipart", "multipart"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def atheris_problem() -> str | None:
    try:
        import atheris  # noqa: F401
    except ImportError as error:
        return f"atheris is not importable ({error}); pip install -r requirements.txt"
    return None


def run_command(args) -> int:
    if args.replay:
        return replay(args.replay)
    names = list(TARGETS) if args.targets in ("all", "") else [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        raise ValueError(f"unknown fuzz target(s): {', '.join(unknown)}; accepted: {', '.join(TARGETS)}")
    if args.seconds <= 0:
        raise ValueError(f"--seconds must be > 0 (got {args.seconds:g})")
    engine = args.engine
    problem = atheris_problem()
    if engine == "atheris" and problem:
        raise ValueError(problem)
    if engine == "auto":
        engine = "random" if problem else "atheris"
        if problem:
            print(f"note: {problem}; using random mutations without coverage feedback", file=sys.stderr)
    crash_dir = Path(args.crash_dir).resolve()
    results = []
    with tempfile.TemporaryDirectory(prefix="mmnar-fuzz-") as scratch:
        for name in names:
            corpus = Path(args.corpus).resolve() / name if args.corpus else Path(scratch) / "corpus" / name
            print(f"fuzzing {name} for {args.seconds:g} s ({engine}) ...", file=sys.stderr, flush=True)
            if engine == "atheris":
                result = run_atheris_target(name, args.seconds, crash_dir, corpus, Path(scratch))
            else:
                result = random_worker(TARGETS[name], args.seconds, crash_dir, None)
                result["unique"] = len(result["unique_crashes"])
            results.append(result)
            print(_line(result), file=sys.stderr, flush=True)
    report = {
        "engine": engine,
        "seconds_per_target": args.seconds,
        "crash_dir": str(crash_dir),
        "targets": results,
        "total": {
            "executions": sum(_executions(r) for r in results),
            "crashes": sum(r["crashes"] for r in results),
            "seconds": round(sum(r.get("wall_seconds", r["seconds"]) for r in results), 1),
        },
    }
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 1 if report["total"]["crashes"] else 0


def run_atheris_target(name: str, seconds: float, crash_dir: Path, corpus: Path, scratch: Path) -> dict:
    stats_path = scratch / f"{name}.stats.json"
    log_path = scratch / f"{name}.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    command = [
        sys.executable,
        "-m",
        "mmnar_lab.fuzz",
        "--worker",
        name,
        "--seconds",
        str(seconds),
        "--crash-dir",
        str(crash_dir),
        "--stats",
        str(stats_path),
        "--corpus",
        str(corpus),
    ]
    started = time.monotonic()
    with open(log_path, "w", encoding="utf-8", errors="replace") as log:
        # the setup (imports, a model for the server) comes on top of the fuzzing time; a hang is ended
        process = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=seconds + 300)
    elapsed = time.monotonic() - started
    text = log_path.read_text(encoding="utf-8", errors="replace")
    stats = (
        json.loads(stats_path.read_text())
        if stats_path.exists()
        else {
            "target": name,
            "engine": "atheris",
            "executions": 0,
            "accepted": 0,
            "refused": 0,
            "skipped": 0,
            "crashes": 0,
            "unique_crashes": {},
            "seconds": 0.0,
        }
    )
    stats.update(parse_libfuzzer(text))
    stats["wall_seconds"] = round(elapsed, 1)
    stats["exit_status"] = process.returncode
    if process.returncode != 0:  # libFuzzer stopped early: a hang, out of memory, or the harness itself failed
        artifacts = re.findall(r"Test unit written to (\S+)", text)
        reason = next((r for r in ("timeout", "out-of-memory", "deadly signal", "Traceback") if r in text), "exit")
        stats["crashes"] += 1
        stats["unique_crashes"][f"libfuzzer-{reason}"] = {
            "signature": f"the run stopped early ({reason}, exit status {process.returncode})",
            "count": 1,
            "input": artifacts[-1] if artifacts else None,
            "log_tail": text[-3000:],
        }
    stats["unique"] = len(stats["unique_crashes"])
    return stats


def parse_libfuzzer(text: str) -> dict:
    """Executions, coverage (edges `cov`, features `ft`) and corpus size from libFuzzer's output."""
    out: dict = {}
    for line in text.splitlines():
        match = _STATUS.match(line)
        if match:
            runs, cov, ft, corp, _, rate = match.groups()
            out.update(libfuzzer_runs=int(runs), corpus=int(corp), exec_per_s=int(rate))
            if cov:
                out.update(coverage_edges=int(cov), coverage_features=int(ft))
        done = re.match(r"^Done (\d+) runs in (\d+) second", line)
        if done:
            out.update(libfuzzer_runs=int(done.group(1)), fuzz_seconds=int(done.group(2)))
        units = re.match(r"^stat::number_of_executed_units: (\d+)", line)
        if units:
            out["libfuzzer_runs"] = int(units.group(1))
    return out


def _executions(result: dict) -> int:
    """libFuzzer's count when there is one (the harness's own is written at most once a second)."""
    return max(result.get("executions", 0), result.get("libfuzzer_runs", 0))


def _line(result: dict) -> str:
    executions = _executions(result)
    seconds = result.get("fuzz_seconds") or result.get("seconds") or 0
    cov = f"cov {result['coverage_edges']} ft {result['coverage_features']}" if "coverage_edges" in result else "cov -"
    return (
        f"{result['target']:<16} {executions:>9,} execs {seconds:>6.0f} s {executions / max(seconds, 1e-9):>8.0f}/s "
        f"{cov:<18} accepted {result.get('accepted', 0):>7,} refused {result.get('refused', 0):>7,} "
        f"crashes {result['crashes']} ({result.get('unique', len(result['unique_crashes']))} distinct)"
    )


def format_report(report: dict) -> str:
    lines = [f"fuzz report ({report['engine']}, {report['seconds_per_target']:g} s per target)"]
    lines += [_line(r) for r in report["targets"]]
    for result in report["targets"]:
        for crash in result["unique_crashes"].values():
            lines.append(f"  {result['target']}: {crash['signature']} x{crash['count']} -> {crash.get('input')}")
    total = report["total"]
    lines.append(
        f"total: {total['executions']:,} executions, {total['crashes']} crashing, {total['seconds']} s "
        f"(with each target's setup); crashing inputs go to {report['crash_dir']}"
    )
    return "\n".join(lines)


def replay(paths: list[str]) -> int:
    """Run saved inputs again; 0 if none of them fails any more."""
    files = []
    for item in paths:
        path = Path(item)
        files += sorted(path.glob("*.bin")) if path.is_dir() else [path]
    contexts: dict = {}
    failures = 0
    quiet()
    try:
        for path in files:
            name = next((n for n in sorted(TARGETS, key=len, reverse=True) if path.name.startswith(n + "-")), None)
            if name is None:
                print(f"{path}: skipped (the name does not start with a target: {', '.join(TARGETS)})")
                continue
            target = TARGETS[name]
            if name not in contexts:
                contexts[name] = target.setup()
            try:
                outcome = target.run(contexts[name], path.read_bytes())
            except Exception as error:  # noqa: BLE001
                failures += 1
                print(f"{path}: FAILS: {crash_signature(error)}: {str(error)[:300]}")
            else:
                print(f"{path}: ok ({outcome})")
    finally:
        for name, context in contexts.items():
            TARGETS[name].teardown(context)
    return 1 if failures else 0


def _worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m mmnar_lab.fuzz")
    parser.add_argument("--worker", required=True, choices=list(TARGETS))
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--crash-dir", required=True)
    parser.add_argument("--stats", required=True)
    parser.add_argument("--corpus", required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    atheris_worker(TARGETS[args.worker], args.seconds, Path(args.crash_dir), Path(args.stats), Path(args.corpus))


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
