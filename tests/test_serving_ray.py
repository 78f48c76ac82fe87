"""Ray Serve scale-out (mmnar_core/serving/ray_app.py): the deployment definition without Ray running, then a
real local Ray Serve with 2 CPU replicas answering /predict with the in-process Predictor's numbers.

The real round trip costs ~20-40 s on the 2-core CI machine (Ray start ~5 s, two replicas loading the demo
model ~10 s, shutdown ~5 s), measured in docs/scale.md; it is skipped only when Ray Serve is not installed."""

from __future__ import annotations

import argparse
import socket
import time

import pytest

pytest.importorskip("ray.serve")

from mmnar_core.resources import DEMO_BUNDLE
from mmnar_core.serving import ray_app  # noqa: E402
from mmnar_core.serving.config import ServeConfig  # noqa: E402

DEMO = DEMO_BUNDLE


def test_deployment_definition_replicas_resources_and_limits():
    config = ServeConfig(max_batch=4, max_queue=16, retry_after_s=2)
    options = ray_app.deployment_options(3, 0.5, config, cpus_per_replica=0.25)
    assert options["num_replicas"] == 3
    assert options["ray_actor_options"] == {"num_cpus": 0.25, "num_gpus": 0.5}
    assert options["max_ongoing_requests"] == 2 * 4 + 16  # above the app's batch + queue: the app decides overload ...
    assert options["max_queued_requests"] == 16  # ... and Ray's router queue is bounded too
    assert options["backpressure_config"] == {"status_code": 503, "retry_after_s": 2.0}
    cpu_only = ray_app.deployment_options(2, 0.0, ServeConfig())
    assert cpu_only["ray_actor_options"] == {"num_cpus": ray_app.DEFAULT_CPUS_PER_REPLICA}  # 2 fit on 2 cores
    for bad in ((0, 0.0, 0.5), (2, -1.0, 0.5), (2, 1.5, 0.5), (2, 0.0, 0.0)):
        with pytest.raises(ValueError):
            ray_app.deployment_options(bad[0], bad[1], ServeConfig(), bad[2])

    replica = ray_app.replica_config(ServeConfig(), gpus_per_replica=0.5, cpus_per_replica=0.5)
    assert replica.load_in_background is False and replica.device == "cuda" and replica.threads == 1
    assert ray_app.replica_config(ServeConfig(device="cpu", threads=3), 0.5).device == "cpu"

    application = ray_app.build_deployment(DEMO, 2, 0.0, config)
    deployment = application._bound_deployment
    assert deployment.name == ray_app.DEPLOYMENT_NAME
    assert deployment.num_replicas == 2
    assert deployment.ray_actor_options["num_cpus"] == ray_app.DEFAULT_CPUS_PER_REPLICA
    bundle, replica_config = deployment.init_args[:2]
    assert bundle == str(DEMO.resolve()) and ServeConfig.from_dict(replica_config).device == "cpu"
    with pytest.raises(FileNotFoundError):
        ray_app.build_deployment(DEMO.parent, 2, 0.0, config)  # a folder, not a bundle


def test_ray_options_and_config_from_the_serve_command():
    from mmnar_core.serving import command

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    serve = parser._subparsers._group_actions[0].choices["serve"]
    if not any("--replicas" in a.option_strings for a in serve._actions):
        ray_app.add_ray_arguments(serve)
    args = parser.parse_args(
        [
            "serve",
            str(DEMO),
            "--ray",
            "--replicas",
            "3",
            "--gpus-per-replica",
            "0.25",
            "--address",
            "auto",
            "--max-batch",
            "4",
            "--timeout",
            "9",
            "--port",
            "9000",
        ]
    )
    assert (args.ray, args.replicas, args.gpus_per_replica, args.address) == (True, 3, 0.25, "auto")
    config = ray_app.serve_config_from_args(args)
    assert (config.max_batch, config.request_timeout_s, config.port) == (4, 9.0, 9000)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_local_ray_serve_two_replicas_answer_like_the_predictor():
    import httpx

    from mmnar_app.demo_patients import load_demo_patients
    from mmnar_core.predictor import Predictor
    from mmnar_lab.serving.loadtest import demo_payloads, extract_risks

    patients = load_demo_patients()[:3]
    predictor = Predictor.load(DEMO, device="cpu")
    expected = [{r.task: r.risk for r in predictor.predict(p.record()).risks} for p in patients]
    del predictor
    payloads = demo_payloads(3)

    started = time.monotonic()
    url = ray_app.run(DEMO, ServeConfig(port=_free_port()), replicas=2, blocking=False, ready_timeout_s=240)
    try:
        assert ray_app.running_replicas() == 2
        assert len(ray_app.replica_actor_names()) == 2
        with httpx.Client(timeout=120, trust_env=False) as client:
            assert client.get(url + "/ready").status_code == 200
            for payload, want in zip(payloads, expected):
                response = client.post(url + "/predict", files=payload.form("predict"))
                assert response.status_code == 200, response.text
                got = extract_risks(response.json())
                assert got.keys() == want.keys()
                for task in want:
                    assert got[task] == pytest.approx(want[task], abs=1e-6), task
            stats = client.get(url + "/stats").json()
            assert stats["ready"] and stats["worker_running"]
    finally:
        ray_app.shutdown()
    import ray

    assert not ray.is_initialized()
    print(f"local Ray Serve round trip: {time.monotonic() - started:.1f} s")
