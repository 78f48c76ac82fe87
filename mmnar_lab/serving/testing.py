"""Running the server inside a process (tests, notebooks, load tests): `ServerThread(app)` serves a FastAPI
app with uvicorn on 127.0.0.1 in a background thread, on a free port unless one is given.

    with ServerThread(create_app(predictor, ServeConfig())) as server:
        httpx.get(server.url + "/ready")
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager


class ServerThread:
    def __init__(
        self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning", start_timeout: float = 30.0
    ):
        import uvicorn

        from mmnar_core.serving.transport import uvicorn_settings

        serving = getattr(getattr(app, "state", None), "serving", None)  # the limits of `serve` for our own apps
        limits = uvicorn_settings(serving.config) if serving is not None else {}
        self.config = uvicorn.Config(
            app, host=host, port=port, log_level=log_level, lifespan="on", access_log=False, **limits
        )
        self.server = uvicorn.Server(self.config)
        self.server.install_signal_handlers = lambda: None  # not the main thread
        self.start_timeout = start_timeout
        self.thread: threading.Thread | None = None
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServerThread:
        self.thread = threading.Thread(target=self.server.run, name="mmnar-uvicorn", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"the server thread stopped while starting on {self.host}:{self.port}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server did not start within {self.start_timeout:g} s")
            time.sleep(0.01)
        sockets = [s for server in self.server.servers for s in server.sockets]
        if sockets:
            self.port = sockets[0].getsockname()[1]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


_PREDICTORS: dict = {}
_PREDICTORS_LOCK = threading.Lock()


def cached_predictor(bundle_dir, device: str | None = None):
    """One loaded Predictor per (bundle, device) per process, so several test modules (or notebook cells)
    share one model instead of loading it again. Use it from one thread at a time."""
    from pathlib import Path

    from mmnar_core.predictor import Predictor

    key = (str(Path(bundle_dir).resolve()), device)
    with _PREDICTORS_LOCK:
        if key not in _PREDICTORS:
            _PREDICTORS[key] = Predictor.load(bundle_dir, device=device)
        return _PREDICTORS[key]


@contextmanager
def stand_in_servers(ready_timeout: float = 10.0):
    """`start(config, predictor=None) -> (thread, predictor, serving state)`: model servers over the stand-in
    predictor (`stand_in.StubPredictor`), each ready before it is returned, all stopped on exit."""
    from mmnar_lab.serving.stand_in import stub_app

    threads: list[ServerThread] = []

    def start(config, predictor=None):
        app, predictor = stub_app(None, config, predictor)
        thread = ServerThread(app).start()
        assert app.state.serving.wait_ready(ready_timeout), "the stand-in server did not become ready"
        threads.append(thread)
        return thread, predictor, app.state.serving

    try:
        yield start
    finally:
        for thread in threads:
            thread.stop()
