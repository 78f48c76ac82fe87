"""`python -m mmnar_lab.serving.attack`: replays the attack cases of issue 18 against a model server on
127.0.0.1 (started here, in this process) and prints, per case, the statuses returned, the time and the
growth of this process's peak RSS; after every case /health and a normal /predict must still answer 200.

Why a replay: each defence (decoded-size budget, work limits and cancellation, admission before decoding,
connection deadlines, query-string tokens) is tested on its own; this shows them together, at the sizes
of the attack, with the figures docs/security.md and benchmarks/README.md quote. Every loop is bounded
and the command stops by itself. With --bundle the real model is served; without, the stand-in model
(mmnar_lab.serving.stand_in: the real request parsing and image decoding, a model that only takes time).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from mmnar_core.serving.config import ServeConfig


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def big_png(side: int = 8000) -> bytes:
    """A black PNG of side x side pixels: a few kB on the wire, side x side bytes decoded."""
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((side, side), np.uint8), mode="L").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def form(note: str | None = None, image: tuple[str, bytes] | None = None) -> list:
    parts = [("structured", (None, json.dumps({"age": 70}).encode()))]
    if note is not None:
        parts.append(("discharge_note", (None, note.encode())))
    if image is not None:
        parts.append(("cxr", image))
    return parts


def raw(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(data)
        out = b""
        try:
            while chunk := conn.recv(65536):
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return out


def status_of(answer: bytes) -> str:
    return answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1 ") else "closed"


# ------------------------------------------------------------------------------------------------ cases
PREPARED: dict[str, bytes] = {}  # inputs built before the clock starts


def prepare(scale: float) -> None:
    from mmnar_lab.dicom import deflated_zero_dicom

    PREPARED["bomb"] = deflated_zero_dicom(frames=30)  # the case itself, whatever the scale
    PREPARED["png"] = big_png(4000)


def counts(codes) -> list[str]:
    return [f"{code}x{codes.count(code)}" for code in sorted(set(codes))]


def case_dicom_bomb(url, port, scale):
    bomb = PREPARED["bomb"]
    answer = httpx.post(url + "/predict", files=form(image=("bomb.dcm", bomb, "application/dicom")), timeout=60)
    return [answer.status_code], f"{len(bomb) // 1024} kB deflated DICOM of zeros"


def case_long_notes_explain(url, port, scale):
    note = ("fever, cough and shortness of breath. " * 6000)[:199_000]
    answer = httpx.post(url + "/explain", files=form(note=note), timeout=60)
    return [answer.status_code], "explain, a 199,000-character note (request timeout of the replay server)"


def case_png_flood(url, port, scale):
    png = PREPARED["png"]
    count = max(4, int(24 * scale))

    def send(_):
        return httpx.post(url + "/predict", files=form(image=("x.png", png, "image/png")), timeout=60).status_code

    with ThreadPoolExecutor(count) as pool:
        codes = list(pool.map(send, range(count)))
    refused = httpx.get(url + "/stats", timeout=10).json().get("refused_before_reading")
    return counts(codes), (
        f"{count} concurrent requests, {len(png) // 1024} kB PNG of 4000 x 4000 each "
        f"({refused} refused before reading, in all so far)"
    )


def case_idle_connections(url, port, scale):
    count = max(10, int(150 * scale))
    conns = []
    for i in range(count):
        conn = socket.create_connection(("127.0.0.1", port))
        if i % 2:
            conn.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        conn.settimeout(30)
        conns.append(conn)
    closed = 0
    for conn in conns:
        try:
            closed += conn.recv(100) == b""
        except OSError:
            pass
        conn.close()
    return [f"{closed}/{count} closed"], f"{count} idle or half-sent connections"


def case_slow_body(url, port, scale):
    answer = raw(
        port,
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 100000\r\n\r\n--b",
        timeout=30,
    )
    return [status_of(answer)], "a body that never finishes"


def case_query_token(url, port, scale):
    answer = httpx.get(url + "/info?access_token=secret-in-url", timeout=10)
    return [answer.status_code], "token in the query string"


CASES = {
    "1 dicom_bomb": case_dicom_bomb,
    "2 long_notes_explain": case_long_notes_explain,
    "3 png_flood": case_png_flood,
    "11 idle_connections": case_idle_connections,
    "11 slow_body": case_slow_body,
    "12 query_token": case_query_token,
}


# ------------------------------------------------------------------------------------------------ run
def serve(bundle: str | None, config: ServeConfig):
    from mmnar_lab.serving.testing import ServerThread

    if bundle:
        from mmnar_core.predictor import Predictor
        from mmnar_core.serving import create_app

        app = create_app(Predictor.load(bundle), config)
    else:
        from mmnar_lab.serving.stand_in import StubPredictor, stub_app

        app, _ = stub_app(None, config, StubPredictor(steps=100_000, step_s=0.01))
    server = ServerThread(app).start()
    if not app.state.serving.wait_ready(300):
        raise SystemExit(f"the model did not load: {app.state.serving.load_error}")
    return server


def healthy(url: str) -> bool:
    return (
        httpx.get(url + "/health", timeout=10).status_code == 200
        and httpx.post(url + "/predict", files=form(), timeout=30).status_code == 200
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmnar_lab.serving.attack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default=None, help="serve this model bundle (default: the stand-in model)")
    parser.add_argument("--scale", type=float, default=1.0, help="size of the cases (1 = the attack's; CI: 0.1)")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of: " + ", ".join(CASES))
    args = parser.parse_args(argv)
    config = ServeConfig(
        max_queue=4,
        request_timeout_s=2.0,
        header_timeout_s=2.0,
        body_timeout_s=2.0,
        keep_alive_s=2.0,
        log_level="error",
    )
    prepare(args.scale)
    server = serve(args.bundle, config)
    load = os.getloadavg()
    print(
        f"attack replay on {server.url} ({'bundle ' + args.bundle if args.bundle else 'stand-in model'}; "
        f"max_queue 4, timeouts 2 s; scale {args.scale:g}; load average {load[0]:.2f} on {os.cpu_count()} CPUs)"
    )
    print(f"{'case':<22} {'statuses':<28} {'seconds':>8} {'peak RSS +MB':>13}  healthy  what")
    failures = 0
    try:
        for name in [c.strip() for c in args.cases.split(",") if c.strip()]:
            before, started = peak_mb(), time.perf_counter()
            statuses, what = CASES[name](server.url, server.port, args.scale)
            seconds = time.perf_counter() - started
            ok = healthy(server.url)
            failures += not ok
            shown = ",".join(str(s) for s in statuses)
            print(
                f"{name:<22} {shown[:28]:<28} {seconds:>8.2f} {peak_mb() - before:>13.0f}  {'yes' if ok else 'NO':<7}  "
                f"{what}",
                flush=True,
            )
    finally:
        server.stop()
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
