"""Ray Serve scale-out of the model server: the same FastAPI application (`server.create_app`) as N replicas.

    python -m mmnar_core serve BUNDLE_DIR --ray --replicas N [--gpus-per-replica G] [--cpus-per-replica C]
        [--address auto|ray://HOST:10001|HOST:6379] [--host 127.0.0.1] [--port 8765] [--max-batch ...]

Without `--address` a local Ray is started on this machine (loopback only, no dashboard, an object store of
200 MB: requests and answers are small and pass through the proxy, not the object store) and is stopped with
the command. With `--address` the command joins a running cluster, deploys there and deletes its application
on exit (Ctrl-C / SIGTERM).

Each replica is a Ray actor that builds the server's own FastAPI app (`__serve_build_asgi_app__`) around its own
`Predictor` and runs the server's micro-batcher in-process. Why the app's batcher and not `@serve.batch`:

- one code path: the plain server and every replica batch, bound their queue, answer 503 + Retry-After (grown
  with the expected wait) and 504 past `request_timeout_s` the same way, and GET /stats reports the same
  counters; `@serve.batch` would need a second, Ray-only request path with its own overload semantics;
- the batcher handles predict, what-if and explain jobs in one worker thread that alone touches the model
  (explanations use Captum hooks on it); `@serve.batch` batches calls of one method;
- Ray still bounds what reaches a replica: `max_ongoing_requests` = 2 x max_batch + max_queue per replica
  (above what the app holds, so the app's own queue decides overload) and `max_queued_requests` = max_queue
  at the router, past which Ray's proxy answers 503 with Retry-After too (BackpressureConfig), so no request
  waits unboundedly anywhere.

Resources: `ray_actor_options` = {num_cpus: C (default 0.5: 2 replicas fit on 2 cores with room for the
proxy), num_gpus: G (a fraction shares one GPU between replicas; Ray sets CUDA_VISIBLE_DEVICES so the
replica's `cuda` is its GPU)}. Torch runs max(1, round(C)) intra-op threads per replica unless
ServeConfig.threads says otherwise. Replicas load the model before they are routed to (ServeConfig
.load_in_background is forced off), so a replacement replica takes traffic only once it can answer.

A cluster's replicas read BUNDLE_DIR from their own file system: use a path every node sees (shared storage)
and have this package installed on every node (or a runtime_env with it).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

from mmnar_core.serving.config import ServeConfig

log = logging.getLogger("mmnar_core.serving")

APP_NAME = "mmnar"
DEPLOYMENT_NAME = "MMNARServer"
SERVE_NAMESPACE = "serve"  # Ray Serve's own actors (controller, proxies, replicas) live there
DEFAULT_CPUS_PER_REPLICA = 0.5
DEFAULT_OBJECT_STORE_MB = 200
PROXY_TIMEOUT_MARGIN_S = 5.0  # the app answers 504 itself at request_timeout_s; the proxy's limit is later


# --------------------------------------------------------------------------- the replica
def _load_predictor(bundle_dir: str, device: str | None, image_weights: str | None, text_model: str | None):
    from mmnar_core.predictor import Predictor

    return Predictor.load(bundle_dir, device=device, image_weights=image_weights, text_model=text_model)


class MMNARReplica:
    """One Ray Serve replica: the server's FastAPI app around its own Predictor. `build_deployment` wraps this
    class with `serve.ingress()` (the app is built on the replica, by `__serve_build_asgi_app__`)."""

    def __init__(self, bundle_dir: str, config: dict, image_weights: str | None = None, text_model: str | None = None):
        self.bundle_dir = str(bundle_dir)
        self.config = ServeConfig.from_dict(config)
        self.image_weights, self.text_model = image_weights, text_model
        self.state = None

    def __serve_build_asgi_app__(self):
        from functools import partial

        from mmnar_core.serving.server import create_app

        factory = partial(_load_predictor, self.bundle_dir, self.config.device, self.image_weights, self.text_model)
        app = create_app(factory, self.config)
        self.state = app.state.serving
        # load now (load_in_background is off): the replica is routed to only once it can answer
        self.state.start()
        if self.state.load_error is not None:
            raise RuntimeError(f"replica could not load {self.bundle_dir}: {self.state.load_error}")
        return app

    def check_health(self) -> None:
        """Ray's periodic health check: a replica whose model failed or whose batch worker died is replaced."""
        state = self.state
        if state is None:
            return
        if state.load_error is not None:
            raise RuntimeError(f"model failed to load: {state.load_error}")
        if state.ready and (state.batcher is None or not state.batcher.running):
            raise RuntimeError("the batch worker of this replica is not running")


# --------------------------------------------------------------------------- the deployment
def replica_config(
    serve_config: ServeConfig, gpus_per_replica: float = 0.0, cpus_per_replica: float = DEFAULT_CPUS_PER_REPLICA
) -> ServeConfig:
    """The ServeConfig a replica runs: model loaded before traffic, torch threads sized to its CPU share, the
    device from its GPU share (unless set explicitly)."""
    changes: dict = {"load_in_background": False}
    if serve_config.threads is None:
        changes["threads"] = max(1, int(round(cpus_per_replica)))
    if serve_config.device is None:
        changes["device"] = "cuda" if gpus_per_replica > 0 else "cpu"
    return serve_config.with_(**changes)


def deployment_options(
    replicas: int,
    gpus_per_replica: float,
    serve_config: ServeConfig,
    cpus_per_replica: float = DEFAULT_CPUS_PER_REPLICA,
) -> dict:
    """Keyword arguments of `serve.deployment` (plain data; tests read them without starting Ray)."""
    if replicas < 1:
        raise ValueError(f"--replicas must be at least 1 (got {replicas})")
    if gpus_per_replica < 0 or cpus_per_replica <= 0:
        raise ValueError(
            f"--gpus-per-replica must be >= 0 and --cpus-per-replica > 0 (got {gpus_per_replica}, {cpus_per_replica})"
        )
    if gpus_per_replica > 1 and not float(gpus_per_replica).is_integer():
        raise ValueError(f"--gpus-per-replica above 1 must be a whole number (got {gpus_per_replica})")
    actor = {"num_cpus": float(cpus_per_replica)}
    if gpus_per_replica:
        actor["num_gpus"] = float(gpus_per_replica)
    return {
        "name": DEPLOYMENT_NAME,
        "num_replicas": int(replicas),
        "ray_actor_options": actor,
        # more than the app holds (a batch running + max_queue waiting), so the app's bounded queue decides
        # overload (503 + Retry-After from the expected wait) ...
        "max_ongoing_requests": 2 * serve_config.max_batch + serve_config.max_queue,
        # ... and past it, Ray's router holds at most this many before its proxy answers 503 + Retry-After
        "max_queued_requests": serve_config.max_queue,
        "backpressure_config": {"status_code": 503, "retry_after_s": float(serve_config.retry_after_s)},
        "health_check_period_s": 5.0,
        "health_check_timeout_s": 30.0,
        "graceful_shutdown_timeout_s": 10.0,
    }


def build_deployment(
    bundle_dir: str | Path,
    replicas: int = 2,
    gpus_per_replica: float = 0.0,
    serve_config: ServeConfig | None = None,
    cpus_per_replica: float = DEFAULT_CPUS_PER_REPLICA,
    image_weights: str | None = None,
    text_model: str | None = None,
):
    """The bound Ray Serve application (`serve.run(build_deployment(...))` deploys it)."""
    from ray import serve

    serve_config = serve_config or ServeConfig()
    bundle = Path(bundle_dir).resolve()
    if not (bundle / "bundle.json").is_file():
        raise FileNotFoundError(f"{bundle} is not a model bundle (no bundle.json)")
    options = deployment_options(replicas, gpus_per_replica, serve_config, cpus_per_replica)
    replica = replica_config(serve_config, gpus_per_replica, cpus_per_replica)
    deployment = serve.deployment(**options)(serve.ingress()(MMNARReplica))
    weights = str(Path(image_weights).resolve()) if image_weights else None
    return deployment.bind(str(bundle), replica.to_dict(), weights, text_model)


# --------------------------------------------------------------------------- Ray itself
def connect(
    address: str | None = None, num_cpus: float | None = None, object_store_mb: int = DEFAULT_OBJECT_STORE_MB
) -> bool:
    """Join the Ray cluster at `address` ('auto', 'ray://host:10001', 'host:6379'), or start a local one
    (loopback, no dashboard, small object store). True when this call started a local Ray."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reporting
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        return False
    # the package is installed (a wheel, or editable from a checkout): the workers, started with this
    # interpreter and environment, import it as the driver does
    ray.init(
        num_cpus=int(math.ceil(num_cpus or os.cpu_count() or 1)),
        object_store_memory=int(object_store_mb) * 2**20,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    return True


def replica_actor_names(app_name: str = APP_NAME) -> list[str]:
    """Names of the live replica actors of `app_name` (Ray names them SERVE_REPLICA::APP#DEPLOYMENT#ID)."""
    from ray.util import list_named_actors

    prefix = f"SERVE_REPLICA::{app_name}#"
    return sorted(
        a["name"]
        for a in list_named_actors(all_namespaces=True)
        if a.get("namespace") == SERVE_NAMESPACE and a["name"].startswith(prefix)
    )


def running_replicas(app_name: str = APP_NAME, deployment: str = DEPLOYMENT_NAME) -> int:
    """Replicas the Serve controller reports RUNNING (0 when the application is not there)."""
    from ray import serve
    from ray.serve.schema import ReplicaState

    try:
        app = serve.status().applications.get(app_name)
    except Exception:  # noqa: BLE001  (controller briefly unreachable)
        return 0
    if app is None or deployment not in app.deployments:
        return 0
    return int(app.deployments[deployment].replica_states.get(ReplicaState.RUNNING, 0))


def run(
    bundle_dir: str | Path,
    serve_config: ServeConfig | None = None,
    replicas: int = 2,
    gpus_per_replica: float = 0.0,
    address: str | None = None,
    cpus_per_replica: float = DEFAULT_CPUS_PER_REPLICA,
    num_cpus: float | None = None,
    object_store_mb: int = DEFAULT_OBJECT_STORE_MB,
    blocking: bool = True,
    stop: threading.Event | None = None,
    ready_timeout_s: float = 600.0,
    image_weights: str | None = None,
    text_model: str | None = None,
) -> str:
    """Deploy and (with `blocking`) serve until Ctrl-C / SIGTERM / `stop` is set; then delete the application
    and, if this call started the local Ray, stop it. Returns the base URL."""
    from ray import serve

    serve_config = serve_config or ServeConfig()
    application = build_deployment(
        bundle_dir, replicas, gpus_per_replica, serve_config, cpus_per_replica, image_weights, text_model
    )
    started_ray = connect(address, num_cpus, object_store_mb)
    try:
        serve.start(
            http_options={
                "host": serve_config.host,
                "port": serve_config.port,
                "request_timeout_s": serve_config.request_timeout_s + PROXY_TIMEOUT_MARGIN_S,
            }
        )
        t0 = time.monotonic()
        serve.run(application, name=APP_NAME, route_prefix="/", blocking=False)
        while running_replicas() < replicas and time.monotonic() - t0 < ready_timeout_s:
            time.sleep(0.5)
        url = f"http://{serve_config.host}:{serve_config.port}"
        print(
            f"Ray Serve: {running_replicas()}/{replicas} replicas of {Path(bundle_dir)} at {url} "
            f"({time.monotonic() - t0:.1f} s)",
            flush=True,
        )
    except BaseException:
        _teardown(started_ray)
        raise
    if not blocking:
        return url
    stop = stop or threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _teardown(started_ray)
    return url


def _teardown(started_ray: bool) -> None:
    import ray
    from ray import serve

    if not ray.is_initialized():
        return
    try:
        if started_ray:
            serve.shutdown()
        else:
            serve.delete(APP_NAME)  # a shared cluster keeps its other applications
    finally:
        ray.shutdown()


def shutdown() -> None:
    """Stop Serve and the Ray this process started or joined (tests, the benchmark)."""
    _teardown(True)


# --------------------------------------------------------------------------- command line
def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """The `--ray` options of `python -m mmnar_core serve` (the serve command calls this and dispatches to
    `main_ray` when `--ray` is given)."""
    group = parser.add_argument_group("Ray Serve (scale-out)")
    group.add_argument("--ray", action="store_true", help="serve as a Ray Serve deployment of --replicas replicas")
    group.add_argument("--replicas", type=int, default=2, help="Ray Serve replicas (default 2)")
    group.add_argument(
        "--gpus-per-replica",
        type=float,
        default=0.0,
        help="GPU share of each replica, e.g. 0.5 puts two replicas on one GPU (default 0: CPU)",
    )
    group.add_argument(
        "--cpus-per-replica",
        type=float,
        default=DEFAULT_CPUS_PER_REPLICA,
        help=f"CPU share of each replica (default {DEFAULT_CPUS_PER_REPLICA}: 2 replicas fit on 2 cores)",
    )
    group.add_argument(
        "--address",
        default=None,
        help="join this Ray cluster (auto, ray://HOST:10001, HOST:6379) instead of starting a local Ray",
    )
    group.add_argument(
        "--object-store-mb",
        type=int,
        default=DEFAULT_OBJECT_STORE_MB,
        help=f"object store of a local Ray, MB (default {DEFAULT_OBJECT_STORE_MB})",
    )


ARG_ALIASES = {"timeout": "request_timeout_s"}  # serve command option -> ServeConfig field
ARG_MEGABYTES = {"max_request_mb": "max_request_bytes", "max_image_mb": "max_image_bytes"}


def serve_config_from_args(args: argparse.Namespace) -> ServeConfig:
    """ServeConfig from the serve command's options (field names, plus --timeout and the --max-*-mb sizes);
    the serve command may pass the config it built instead."""
    given = vars(args)
    values = {f.name: given[f.name] for f in fields(ServeConfig) if given.get(f.name) is not None}
    for option, name in ARG_ALIASES.items():
        if given.get(option) is not None:
            values[name] = given[option]
    for option, name in ARG_MEGABYTES.items():
        if given.get(option) is not None:
            values[name] = int(given[option] * 2**20)
    return ServeConfig.from_dict(values)


def main_ray(args: argparse.Namespace, config: ServeConfig | None = None) -> int:
    """`python -m mmnar_core serve BUNDLE --ray ...`: the serve command builds `config` and calls this."""
    bundle = getattr(args, "bundle", None) or args.bundle_dir
    try:
        from ray import serve  # noqa: F401
    except ImportError:
        print("error: --ray needs Ray Serve: pip install 'ray[serve]' (pinned in requirements.txt)", file=sys.stderr)
        return 2
    run(
        bundle,
        config or serve_config_from_args(args),
        args.replicas,
        args.gpus_per_replica,
        args.address,
        args.cpus_per_replica,
        object_store_mb=args.object_store_mb,
        image_weights=getattr(args, "image_weights", None),
        text_model=getattr(args, "text_model", None),
    )
    return 0
