"""Load generator and fault benchmark of the model server (plain uvicorn or Ray Serve).

    python -m mmnar_lab.serving.loadtest --url http://127.0.0.1:8765 [--endpoint predict|explain]
        [--concurrency 1 2 4 8] [--seconds 20] [--patients N] [--burst]
    python -m mmnar_lab.serving.loadtest --benchmark [--bundle BUNDLE_DIR] [--out FILE]

A small asyncio + httpx client. Each level runs `concurrency` closed-loop workers (a worker sends its next
request when the previous one is answered) for `seconds`, at most `--max-requests` requests, and reports
throughput (answered 200s per second), p50/p95/p99 latency of the 200s and the count of every status
(200 / 503 / 504 / other codes / timeout / connection error). A sample of the answers is compared with what
the in-process `Predictor` says for the same demo patient: a wrong answer under load is counted, not hidden.

`--burst` then sends open-loop traffic (requests start on a fixed schedule whatever the server answers) at 4x
the best sustained rate for a few seconds: a healthy server answers 503 with Retry-After to what its bounded
queue cannot hold, instead of letting requests time out or falling over (/health is checked afterwards).

`--benchmark` runs everything end to end (see `full_benchmark`): the plain server in a subprocess, then Ray
Serve with 2 replicas, the levels on each, and on Ray a replica killed mid-load (failed requests, recovery
time). It prints one JSON object.

Traffic goes only to this machine: a URL whose host is not loopback (127.0.0.0/8, localhost, ::1) is refused,
and every loop is bounded in time and in count.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import itertools
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mmnar_core.resources import DEMO_BUNDLE

ENDPOINTS = ("predict", "explain", "what-if")
MAX_REQUESTS_PER_LEVEL = 5000  # hard bound whatever --seconds says
MAX_BURST_REQUESTS = 3000
RISK_ATOL = 1e-6  # 'exact' batch mode is bit-identical; 'stacked' may differ in the last float bits


# --------------------------------------------------------------------------- safety
def require_loopback(url: str) -> str:
    """The URL, if its host is this machine's loopback; otherwise ValueError (no traffic leaves the machine)."""
    host = urlsplit(url).hostname
    if host is None:
        raise ValueError(f"no host in URL {url!r}")
    if host == "localhost":
        return url
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"load tests only target loopback addresses (127.0.0.0/8, localhost, ::1), not {host!r}"
        ) from None
    if not address.is_loopback:
        raise ValueError(f"load tests only target loopback addresses (127.0.0.0/8, localhost, ::1), not {host!r}")
    return url


# --------------------------------------------------------------------------- statistics
@dataclass
class Outcome:
    """One request: `status` is the HTTP code, or 'timeout' / 'error' (connection refused, reset ...)."""

    status: int | str
    latency_s: float
    patient: int = 0
    retry_after: str | None = None
    body: dict | None = None  # kept for sampled 200s only
    started: float = 0.0  # seconds since the level started


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation between order statistics (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def status_counts(outcomes: Sequence[Outcome]) -> dict[str, int]:
    """Count per status: '200', '503', '504', any other code as itself, 'timeout', 'error'."""
    return dict(sorted(Counter(str(o.status) for o in outcomes).items()))


def summarize(outcomes: Sequence[Outcome], elapsed_s: float) -> dict:
    """Throughput (200s per second), offered rate (all answers per second), latency percentiles of the 200s
    in milliseconds, status counts and how many 503s carried Retry-After."""
    ok = [o.latency_s for o in outcomes if o.status == 200]
    counts = status_counts(outcomes)
    rejected = [o for o in outcomes if o.status == 503]
    other = sum(n for s, n in counts.items() if s not in ("200", "503", "504"))

    def ms(value):
        return None if value is None else round(value * 1000.0, 1)

    return {
        "requests": len(outcomes),
        "elapsed_s": round(elapsed_s, 3),
        "throughput_rps": round(len(ok) / elapsed_s, 3) if elapsed_s > 0 else None,
        "answered_rps": round(len(outcomes) / elapsed_s, 3) if elapsed_s > 0 else None,
        "latency_ms": {
            "p50": ms(percentile(ok, 50)),
            "p95": ms(percentile(ok, 95)),
            "p99": ms(percentile(ok, 99)),
            "max": ms(max(ok)) if ok else None,
        },
        "status": counts,
        "ok": len(ok),
        "rejected_503": len(rejected),
        "rejected_503_with_retry_after": sum(1 for o in rejected if o.retry_after),
        "gateway_timeout_504": counts.get("504", 0),
        "client_timeouts": counts.get("timeout", 0),
        "other_errors": other,
    }


# --------------------------------------------------------------------------- correctness
def extract_risks(body: dict) -> dict[str, float] | None:
    """task -> risk from a /predict answer (a Prediction dict, possibly wrapped) or an /explain answer
    (its `prediction`); None when the answer holds no risks."""
    if not isinstance(body, dict):
        return None
    risks = body.get("risks")
    if isinstance(risks, list) and all(isinstance(r, dict) and "task" in r and "risk" in r for r in risks):
        return {str(r["task"]): float(r["risk"]) for r in risks}
    for key in ("prediction", "result", "explanation"):
        if isinstance(body.get(key), dict):
            found = extract_risks(body[key])
            if found is not None:
                return found
    return None


def check_answers(outcomes: Sequence[Outcome], expected: dict[int, dict[str, float]], atol: float = RISK_ATOL) -> dict:
    """Compare each sampled answer with the in-process risks of its patient. Wrong = a task missing, an extra
    task, or a risk off by more than `atol`; an answer without risks is wrong too."""
    checked, wrong, examples = 0, 0, []
    for outcome in outcomes:
        if outcome.body is None or outcome.patient not in expected:
            continue
        checked += 1
        want = expected[outcome.patient]
        got = extract_risks(outcome.body)
        problem = None
        if got is None:
            problem = "answer has no risks"
        elif set(got) != set(want):
            problem = f"tasks {sorted(got)} != {sorted(want)}"
        else:
            worst = max(want, key=lambda t: abs(got[t] - want[t]))
            if abs(got[worst] - want[worst]) > atol:
                problem = f"{worst}: {got[worst]!r} != {want[worst]!r}"
        if problem is not None:
            wrong += 1
            if len(examples) < 5:
                examples.append({"patient": outcome.patient, "problem": problem})
    return {"checked": checked, "wrong": wrong, "atol": atol, "examples": examples}


# --------------------------------------------------------------------------- inputs
@dataclass
class Payload:
    """One demo patient as the multipart form of the server (see mmnar_core/serving/server.py)."""

    key: str
    data: dict[str, str]
    files: dict[str, tuple[str, bytes, str]] = field(default_factory=dict)

    def form(self, endpoint: str, task: str | None = None) -> dict:
        """Every field as a multipart part (plain fields without a filename), so the body is multipart even
        for a patient with no file: the server answers 400 to a urlencoded form."""
        data = dict(self.data)
        if endpoint == "explain" and task:
            data["task"] = task
        return {**{name: (None, value) for name, value in data.items()}, **self.files}


def demo_payloads(n: int | None = None) -> list[Payload]:
    from mmnar_app.demo_patients import load_demo_patients

    patients = load_demo_patients()[: n or None]
    out = []
    for patient in patients:
        data = {"patient_id": patient.key, "structured": json.dumps(patient.structured)}
        data.update(patient.texts)
        files = {m: (f"{m}.png", content, "image/png") for m, content in patient.images.items()}
        out.append(Payload(patient.key, data, files))
    return out


def expected_risks(bundle_dir: str | Path = DEMO_BUNDLE, n: int | None = None) -> dict[int, dict[str, float]]:
    """What the in-process Predictor says for the first `n` demo patients (index -> task -> risk)."""
    from mmnar_app.demo_patients import load_demo_patients
    from mmnar_core.predictor import Predictor

    predictor = Predictor.load(bundle_dir, device="cpu")
    out = {}
    for i, patient in enumerate(load_demo_patients()[: n or None]):
        out[i] = {r.task: r.risk for r in predictor.predict(patient.record()).risks}
    return out


# --------------------------------------------------------------------------- traffic
def _client(max_connections: int, timeout_s: float, transport=None):
    import httpx

    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    # the pool wait is part of the request's time; a request the pool cannot place in time is a client timeout
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout_s), trust_env=False, transport=transport)


async def _send(
    client, url: str, payload: Payload, index: int, endpoint: str, task: str | None, keep_body: bool, t0: float
) -> Outcome:
    import httpx

    parts = payload.form(endpoint, task)
    started = time.perf_counter()
    try:
        response = await client.post(url, files=parts)
    except httpx.TimeoutException:
        return Outcome("timeout", time.perf_counter() - started, index, started=started - t0)
    except httpx.HTTPError:
        return Outcome("error", time.perf_counter() - started, index, started=started - t0)
    latency = time.perf_counter() - started
    body = None
    if keep_body and response.status_code == 200:
        try:
            body = response.json()
        except ValueError:
            body = {}
    return Outcome(response.status_code, latency, index, response.headers.get("retry-after"), body, started - t0)


async def closed_loop(
    url: str,
    payloads: Sequence[Payload],
    concurrency: int,
    seconds: float,
    endpoint: str = "predict",
    task: str | Sequence[str] | None = None,
    max_requests: int = MAX_REQUESTS_PER_LEVEL,
    timeout_s: float = 60.0,
    sample_every: int = 5,
    on_outcome: Callable[[Outcome], None] | None = None,
    origin: float | None = None,
    transport=None,
    first_patient: int = 0,
) -> tuple[list[Outcome], float]:
    """`concurrency` workers, each sending its next request when the last is answered, until `seconds` have
    passed or `max_requests` were sent. Request i is about patient (first_patient + i) mod len(payloads); with a
    list of tasks (explain), it explains task number (first_patient + i) // len(payloads) mod len(task), so
    every (patient, task) pair comes once before any repeats (the server caches explanations).
    Every `sample_every`-th answer keeps its body for checking. `Outcome.started` counts from `origin` (a
    time.perf_counter() value; default: now)."""
    require_loopback(url)
    max_requests = min(max_requests, MAX_REQUESTS_PER_LEVEL)
    counter = itertools.count()
    outcomes: list[Outcome] = []
    t0 = time.perf_counter() if origin is None else origin
    deadline = time.perf_counter() + seconds
    async with _client(concurrency, timeout_s, transport) as client:

        async def worker():
            while time.perf_counter() < deadline:
                i = next(counter)
                if i >= max_requests:
                    return
                patient = (first_patient + i) % len(payloads)
                which = (
                    task
                    if task is None or isinstance(task, str)
                    else task[((first_patient + i) // len(payloads)) % len(task)]
                )
                outcome = await _send(
                    client,
                    url,
                    payloads[patient],
                    patient,
                    endpoint,
                    which,
                    sample_every > 0 and i % sample_every == 0,
                    t0,
                )
                outcomes.append(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes, time.perf_counter() - t0


async def open_loop(
    url: str,
    payloads: Sequence[Payload],
    rate: float,
    seconds: float,
    endpoint: str = "predict",
    task: str | None = None,
    max_in_flight: int = 256,
    timeout_s: float = 30.0,
    max_requests: int = MAX_BURST_REQUESTS,
    transport=None,
) -> tuple[list[Outcome], float, int]:
    """Start one request every 1/rate seconds for `seconds` (at most `max_requests`), whatever the server
    answers. A request that would exceed `max_in_flight` outstanding ones is not sent (counted apart).
    Returns (outcomes, elapsed, not_sent)."""
    require_loopback(url)
    total = max(1, min(int(rate * seconds), max_requests, MAX_BURST_REQUESTS))
    interval = 1.0 / rate
    outcomes: list[Outcome] = []
    pending: set[asyncio.Task] = set()
    not_sent = 0
    t0 = time.perf_counter()
    async with _client(max_in_flight, timeout_s, transport) as client:
        for i in range(total):
            delay = t0 + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(pending) >= max_in_flight:
                not_sent += 1
                continue
            patient = i % len(payloads)
            task_ = asyncio.create_task(_send(client, url, payloads[patient], patient, endpoint, task, i % 10 == 0, t0))
            pending.add(task_)
            task_.add_done_callback(lambda t: (pending.discard(t), outcomes.append(t.result())))
        if pending:
            await asyncio.gather(*list(pending), return_exceptions=True)
    return outcomes, time.perf_counter() - t0, not_sent


def health(base_url: str, path: str = "/health", timeout_s: float = 5.0) -> int | str:
    import httpx

    try:
        return httpx.get(require_loopback(base_url.rstrip("/") + path), timeout=timeout_s, trust_env=False).status_code
    except httpx.HTTPError as error:
        return type(error).__name__


def wait_ready(
    base_url: str,
    timeout_s: float = 180.0,
    process: subprocess.Popen | None = None,
    path: str = "/ready",
    consecutive: int = 1,
) -> float:
    """Seconds until `path` answered 200 `consecutive` times in a row (TimeoutError past `timeout_s`)."""
    t0 = time.monotonic()
    streak = 0
    while time.monotonic() - t0 < timeout_s:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server process exited with {process.returncode} before it was ready")
        streak = streak + 1 if health(base_url, path) == 200 else 0
        if streak >= consecutive:
            return time.monotonic() - t0
        time.sleep(0.25 if streak else 0.5)
    raise TimeoutError(f"{base_url}{path} not ready after {timeout_s:.0f} s")


# --------------------------------------------------------------------------- levels and burst
def run_levels(
    base_url: str,
    endpoint: str = "predict",
    concurrency: Sequence[int] = (1, 2, 4, 8),
    seconds: float = 20.0,
    payloads: Sequence[Payload] | None = None,
    expected: dict[int, dict[str, float]] | None = None,
    task: str | Sequence[str] | None = None,
    timeout_s: float = 60.0,
    max_requests: int = MAX_REQUESTS_PER_LEVEL,
    sample_every: int = 5,
    unique_only: bool = False,
) -> list[dict]:
    """The closed-loop levels one after the other. Each level goes on with the next patient (and task); with
    `unique_only` no (patient, task) pair is sent twice over all levels, so an explain benchmark measures
    explanations computed, not the server's explanation cache (a level with no pair left is skipped)."""
    payloads = payloads or demo_payloads()
    url = require_loopback(base_url.rstrip("/") + "/" + endpoint)
    levels = []
    sent = 0
    pairs = len(payloads) * (1 if task is None or isinstance(task, str) else len(task))
    for level in concurrency:
        budget = min(max_requests, pairs - sent) if unique_only else max_requests
        if budget <= 0:
            levels.append(
                {"endpoint": endpoint, "concurrency": level, "skipped": "every (patient, task) pair was sent"}
            )
            continue
        outcomes, elapsed = asyncio.run(
            closed_loop(
                url, payloads, level, seconds, endpoint, task, budget, timeout_s, sample_every, first_patient=sent
            )
        )
        sent += len(outcomes)
        row = {"endpoint": endpoint, "concurrency": level, **summarize(outcomes, elapsed)}
        if expected is not None:
            row["check"] = check_answers(outcomes, expected)
        levels.append(row)
        print(
            f"  {endpoint} c={level}: {row['throughput_rps']} rps, p50 {row['latency_ms']['p50']} ms, "
            f"status {row['status']}",
            file=sys.stderr,
            flush=True,
        )
    return levels


def run_burst(
    base_url: str,
    sustainable_rps: float,
    factor: float = 4.0,
    seconds: float = 10.0,
    payloads: Sequence[Payload] | None = None,
    expected: dict[int, dict[str, float]] | None = None,
    endpoint: str = "predict",
    timeout_s: float = 30.0,
    max_in_flight: int = 256,
) -> dict:
    """Open-loop traffic at `factor` x the sustainable rate; then /health must still answer 200."""
    payloads = payloads or demo_payloads()
    rate = max(1.0, factor * sustainable_rps)
    url = require_loopback(base_url.rstrip("/") + "/" + endpoint)
    outcomes, elapsed, not_sent = asyncio.run(
        open_loop(url, payloads, rate, seconds, endpoint, None, max_in_flight, timeout_s)
    )
    summary = summarize(outcomes, elapsed)
    rejected = [o.latency_s for o in outcomes if o.status == 503]
    row = {
        "endpoint": endpoint,
        "sustainable_rps": round(sustainable_rps, 3),
        "factor": factor,
        "offered_rps": round(rate, 3),
        "seconds": seconds,
        "not_sent_client_cap": not_sent,
        **summary,
        "rejected_latency_ms_p50": None if not rejected else round(percentile(rejected, 50) * 1000, 1),
        "rejected_latency_ms_p99": None if not rejected else round(percentile(rejected, 99) * 1000, 1),
        "health_after": health(base_url),
    }
    if expected is not None:
        row["check"] = check_answers(outcomes, expected)
    print(
        f"  burst {rate:.1f} rps: status {row['status']}, health after {row['health_after']}",
        file=sys.stderr,
        flush=True,
    )
    return row


# --------------------------------------------------------------------------- the full benchmark
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(command: list[str], log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    log = open(log_path, "w")
    # own process group: stopping the server also stops the workers it started
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _stop(process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)  # lets uvicorn / the Ray driver shut down cleanly
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def kill_replica_under_load(
    base_url: str,
    app_name: str,
    replicas: int,
    payloads: Sequence[Payload],
    expected: dict[int, dict[str, float]] | None,
    concurrency: int = 4,
    seconds: float = 40.0,
    kill_at_s: float = 8.0,
    address: str = "auto",
    timeout_s: float = 60.0,
) -> dict:
    """Closed-loop load at `concurrency`; at `kill_at_s` one Ray Serve replica actor is killed (ray.kill, as a
    crash would). Reports the failed requests, when failures stopped, and when the controller had `replicas`
    running replicas again (a new actor in place of the killed one)."""
    import ray

    from mmnar_core.serving import ray_app

    ray_app.connect(address)
    before = ray_app.replica_actor_names(app_name)
    url = require_loopback(base_url.rstrip("/") + "/predict")
    events: dict[str, float | str | None] = {"killed": None, "victim": None, "replicas_back": None}

    def injector():
        time.sleep(kill_at_s)
        victim = sorted(before)[0]
        events["victim"] = victim
        handle = ray.get_actor(victim, namespace=ray_app.SERVE_NAMESPACE)
        events["killed"] = time.perf_counter()
        ray.kill(handle, no_restart=True)
        deadline = time.perf_counter() + max(5.0, seconds - kill_at_s + 60.0)
        while time.perf_counter() < deadline:
            names = ray_app.replica_actor_names(app_name)
            if victim not in names and len(names) >= replicas and ray_app.running_replicas(app_name) >= replicas:
                events["replicas_back"] = time.perf_counter()
                return
            time.sleep(0.2)

    start = time.perf_counter()
    thread = threading.Thread(target=injector, daemon=True)
    thread.start()
    outcomes, elapsed = asyncio.run(
        closed_loop(
            url, payloads, concurrency, seconds, "predict", None, MAX_REQUESTS_PER_LEVEL, timeout_s, 5, origin=start
        )
    )
    thread.join(90)
    kill_s = None if events["killed"] is None else events["killed"] - start
    after = [o for o in outcomes if kill_s is not None and o.started + o.latency_s >= kill_s]
    failed = [o for o in after if o.status != 200]
    last_failure = max((o.started + o.latency_s for o in failed), default=None)
    back_s = None if events["replicas_back"] is None else events["replicas_back"] - events["killed"]
    # throughput per second of the run, to see the dip and the recovery
    per_second = Counter(int(o.started + o.latency_s) for o in outcomes if o.status == 200)
    row = {
        "concurrency": concurrency,
        "seconds": seconds,
        "replicas": replicas,
        "victim": events["victim"],
        "kill_at_s": None if kill_s is None else round(kill_s, 2),
        **summarize(outcomes, elapsed),
        "failed_after_kill": len(failed),
        "failed_status": status_counts(failed),
        "last_failure_after_kill_s": None if last_failure is None else round(last_failure - kill_s, 2),
        "replicas_back_after_s": None if back_s is None else round(back_s, 2),
        "recovery_s": None
        if back_s is None
        else round(max(back_s, 0.0 if last_failure is None else last_failure - kill_s), 2),
        "ok_per_second": [per_second.get(s, 0) for s in range(int(elapsed) + 1)],
        "replicas_after": ray_app.running_replicas(app_name),
    }
    if expected is not None:
        row["check"] = check_answers(outcomes, expected)
    print(
        f"  kill: failed {row['failed_after_kill']} {row['failed_status']}, replicas back after "
        f"{row['replicas_back_after_s']} s",
        file=sys.stderr,
        flush=True,
    )
    return row


def _deployment_run(
    name: str,
    base_url: str,
    payloads,
    expected,
    concurrency,
    seconds,
    explain_concurrency,
    explain_seconds,
    burst_seconds,
    tasks,
) -> dict:
    out = {"name": name, "url": base_url, "load_avg_start": [round(x, 2) for x in os.getloadavg()]}
    out["predict"] = run_levels(base_url, "predict", concurrency, seconds, payloads, expected)
    sustainable = max(level["throughput_rps"] or 0.0 for level in out["predict"])
    out["burst"] = run_burst(base_url, sustainable, 4.0, burst_seconds, payloads, expected)
    if explain_concurrency:
        out["explain"] = run_levels(
            base_url,
            "explain",
            explain_concurrency,
            explain_seconds,
            payloads,
            expected,
            task=tasks,
            timeout_s=180.0,
            sample_every=1,
            unique_only=True,
        )
    out["stats"] = _get_json(base_url + "/stats")
    out["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


def _get_json(url: str):
    import httpx

    try:
        return httpx.get(require_loopback(url), timeout=10, trust_env=False).json()
    except (httpx.HTTPError, ValueError) as error:
        return {"error": type(error).__name__}


def _ray_serve_command() -> list[str]:
    """The serve command with Ray Serve replicas (`python -m mmnar_core serve --ray`)."""
    return [sys.executable, "-m", "mmnar_core", "serve", "--ray"]


def full_benchmark(
    bundle_dir: str | Path = DEMO_BUNDLE,
    concurrency: Sequence[int] = (1, 2, 4, 8),
    seconds: float = 20.0,
    explain_concurrency: Sequence[int] = (1, 2),
    explain_seconds: float = 30.0,
    burst_seconds: float = 10.0,
    patients: int | None = None,
    replicas: int = 2,
    kill_seconds: float = 40.0,
    log_dir: str | Path | None = None,
    serve_args: Sequence[str] = ("--max-queue", "16", "--threads", "1"),
) -> dict:
    """Plain server, then Ray Serve with `replicas` replicas (CPU), the same levels on each, and a replica killed
    under load on Ray. Servers run as subprocesses of the CLI (`python -m mmnar_core serve ...`) on free
    loopback ports and are stopped at the end whatever happens. `serve_args` go to both servers: the default
    queue of 16 (instead of 64) lets a 10-second burst reach the bound on a slow 2-core machine, and one torch
    thread per process (what each Ray replica runs) keeps the plain server from oversubscribing cores that
    other jobs share (docs/model.md measured 2 s vs 100 s for training), so 1 process vs 2 replicas is compared."""
    payloads = demo_payloads(patients)
    expected = expected_risks(bundle_dir, patients)

    tasks = sorted(next(iter(expected.values()), {}))  # explain: every (patient, task) pair once
    log_dir = Path(log_dir or os.environ.get("TMPDIR", "/tmp"))
    log_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "bundle": str(bundle_dir),
        "patients": len(payloads),
        "cpu_count": os.cpu_count(),
        "levels": list(concurrency),
        "seconds_per_level": seconds,
        "explain_tasks": tasks,
        "serve_args": list(serve_args),
        "deployments": [],
    }

    # 1) the plain server
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = _start(
        [
            sys.executable,
            "-m",
            "mmnar_core",
            "serve",
            str(bundle_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *serve_args,
        ],
        log_dir / "loadtest_plain_server.log",
    )
    try:
        ready_s = wait_ready(base, 240, process)
        run = _deployment_run(
            "plain",
            base,
            payloads,
            expected,
            concurrency,
            seconds,
            explain_concurrency,
            explain_seconds,
            burst_seconds,
            tasks,
        )
        run["ready_s"] = round(ready_s, 1)
        result["deployments"].append(run)
    finally:
        _stop(process)

    # 2) Ray Serve, `replicas` CPU replicas on a local Ray
    from mmnar_core.serving import ray_app

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = _start(
        [
            *_ray_serve_command(),
            str(bundle_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--replicas",
            str(replicas),
            *serve_args,
        ],
        log_dir / "loadtest_ray_server.log",
    )
    try:
        t0 = time.monotonic()
        wait_ready(base, 300, process, consecutive=2 * replicas)
        ray_app.connect("auto")
        while ray_app.running_replicas(ray_app.APP_NAME) < replicas and time.monotonic() - t0 < 300:
            time.sleep(0.5)
        ready_s = time.monotonic() - t0
        run = _deployment_run(
            f"ray_serve_{replicas}_replicas",
            base,
            payloads,
            expected,
            concurrency,
            seconds,
            explain_concurrency,
            explain_seconds,
            burst_seconds,
            tasks,
        )
        run["ready_s"] = round(ready_s, 1)
        run["kill_replica"] = kill_replica_under_load(
            base, ray_app.APP_NAME, replicas, payloads, expected, concurrency=4, seconds=kill_seconds
        )
        result["deployments"].append(run)
    finally:
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()  # only disconnects: the cluster belongs to the server process
        finally:
            _stop(process, 90)
    return result


# --------------------------------------------------------------------------- command
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mmnar_lab.serving.loadtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", default=None, help="server base URL on this machine, e.g. http://127.0.0.1:8765")
    parser.add_argument("--endpoint", choices=ENDPOINTS, default="predict")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each level")
    parser.add_argument("--max-requests", type=int, default=MAX_REQUESTS_PER_LEVEL, help="per level (bounded anyway)")
    parser.add_argument("--patients", type=int, default=None, help="use the first N demo patients (default: all)")
    parser.add_argument("--timeout", type=float, default=60.0, help="client timeout per request, seconds")
    parser.add_argument("--task", default=None, help="outcome to explain (explain endpoint; default: each in turn)")
    parser.add_argument("--bundle", default=str(DEMO_BUNDLE), help="bundle of the in-process check")
    parser.add_argument("--no-check", action="store_true", help="do not compare answers with the in-process predictor")
    parser.add_argument("--burst", action="store_true", help="after the levels, 4x the best rate open-loop")
    parser.add_argument("--burst-seconds", type=float, default=10.0)
    parser.add_argument(
        "--benchmark",
        action="store_true",
        help="run the full benchmark: plain server, then Ray Serve (2 replicas) with a replica killed",
    )
    parser.add_argument("--replicas", type=int, default=2, help="Ray replicas of --benchmark")
    parser.add_argument(
        "--explain-concurrency", type=int, nargs="*", default=[1, 2], help="explain levels of --benchmark"
    )
    parser.add_argument("--explain-seconds", type=float, default=30.0)
    parser.add_argument(
        "--kill-seconds", type=float, default=40.0, help="length of the replica-kill run of --benchmark"
    )
    parser.add_argument("--log-dir", default=None, help="server logs of --benchmark (default: $TMPDIR or /tmp)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    if any(c < 1 or c > 256 for c in args.concurrency):
        raise SystemExit("error: --concurrency levels must be between 1 and 256")
    if args.benchmark:
        result = full_benchmark(
            args.bundle,
            args.concurrency,
            args.seconds,
            args.explain_concurrency,
            args.explain_seconds,
            args.burst_seconds,
            args.patients,
            args.replicas,
            args.kill_seconds,
            args.log_dir,
        )
    else:
        if not args.url:
            raise SystemExit("error: --url is required (or --benchmark)")
        try:
            base = require_loopback(args.url).rstrip("/")
        except ValueError as error:
            raise SystemExit(f"error: {error}") from None
        payloads = demo_payloads(args.patients)
        expected = None if args.no_check else expected_risks(args.bundle, args.patients)
        task = args.task
        explain = args.endpoint == "explain"
        if explain and task is None and expected:
            task = sorted(next(iter(expected.values())))  # every (patient, task) pair once: no cache hits
        levels = run_levels(
            base,
            args.endpoint,
            args.concurrency,
            args.seconds,
            payloads,
            expected,
            task,
            args.timeout,
            args.max_requests,
            1 if explain else 5,
            unique_only=explain,
        )
        result = {"url": base, "levels": levels}
        if args.burst:
            sustainable = max(level["throughput_rps"] or 0.0 for level in levels)
            result["burst"] = run_burst(base, sustainable, 4.0, args.burst_seconds, payloads, expected, args.endpoint)
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
