"""`python -m mmnar_core serve BUNDLE_DIR`: serve one model bundle over HTTP (docs/serving.md)."""

from __future__ import annotations

from pathlib import Path

from mmnar_core.serving.config import ServeConfig

_DEFAULTS = ServeConfig()


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve a model bundle over HTTP (predict, what-if, explain; micro-batched)",
        description="Loads the bundle once (GPU when present, else CPU) and answers POST /predict, /what-if and "
        "/explain with multipart inputs validated as the app validates them. GET /health, /ready, /info, /stats, "
        "/docs. See docs/serving.md.",
    )
    parser.add_argument("bundle", metavar="BUNDLE_DIR", help="model bundle directory (e.g. assets/demo_bundle)")
    parser.add_argument("--host", default=_DEFAULTS.host, help=f"address to listen on (default {_DEFAULTS.host})")
    parser.add_argument("--port", type=int, default=_DEFAULTS.port, help=f"port (default {_DEFAULTS.port})")
    parser.add_argument("--max-batch", type=int, default=_DEFAULTS.max_batch,
                        help=f"requests per batch (default {_DEFAULTS.max_batch})")
    parser.add_argument("--max-wait-ms", type=float, default=_DEFAULTS.max_wait_ms,
                        help=f"how long a batch waits for more requests after its first (default {_DEFAULTS.max_wait_ms:g})")
    parser.add_argument("--max-queue", type=int, default=_DEFAULTS.max_queue,
                        help=f"waiting requests before 503 + Retry-After (default {_DEFAULTS.max_queue})")
    parser.add_argument("--batch-mode", choices=ServeConfig.BATCH_MODES, default=_DEFAULTS.batch_mode,
                        help="exact: bit-identical to the in-process predictor (default); stacked: one CNN / "
                        "transformer / fused forward per batch (faster, last-bit differences)")
    parser.add_argument("--timeout", type=float, default=_DEFAULTS.request_timeout_s,
                        help=f"seconds a request may wait and run before 504 (default {_DEFAULTS.request_timeout_s:g})")
    parser.add_argument("--max-request-mb", type=float, default=_DEFAULTS.max_request_bytes / 2**20,
                        help=f"largest request body in MB before 413 (default {_DEFAULTS.max_request_bytes / 2**20:g})")
    parser.add_argument("--max-image-mb", type=float, default=_DEFAULTS.max_image_bytes / 2**20,
                        help=f"largest image file in MB (default {_DEFAULTS.max_image_bytes / 2**20:g})")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present, else CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--image-weights", default=None, help="image encoder weights the bundle was trained with "
                        "(default: the shipped ones)")
    parser.add_argument("--text-model", default=None, help="local text model folder the bundle was trained with")
    parser.add_argument("--log-level", default=_DEFAULTS.log_level,
                        choices=["critical", "error", "warning", "info", "debug"])
    auth = parser.add_argument_group("authentication (none configured: the server is open; docs/serving.md)")
    auth.add_argument("--auth-token-file", default=None, metavar="FILE",
                      help="bearer tokens with their user and role (`python -m mmnar_core serve-token add FILE ...`)")
    auth.add_argument("--oidc-issuer", default=None, metavar="URL",
                      help="accept OIDC access tokens (JWTs) of this issuer, checked against its JWKS")
    auth.add_argument("--oidc-audience", default=None, metavar="AUD", help="the audience those tokens must carry")
    auth.add_argument("--oidc-role-claim", default=_DEFAULTS.oidc_role_claim, metavar="CLAIM",
                      help=f"claim holding the role(s) (default {_DEFAULTS.oidc_role_claim})")
    auth.add_argument("--oidc-role-map", default=_DEFAULTS.oidc_role_map, metavar="VALUE=ROLE,...",
                      help="map claim values to roles clinician / reviewer / admin")
    from mmnar_core.serving.ray_app import add_ray_arguments  # --ray --replicas ... (cheap: Ray loads on use)

    add_ray_arguments(parser)
    parser.set_defaults(func=run_command)
    from mmnar_core.serving.auth import register_token_command

    register_token_command(subparsers)


def run_command(args) -> int:
    bundle = Path(args.bundle)
    if not (bundle / "bundle.json").is_file():
        raise FileNotFoundError(f"{bundle} is not a model bundle (no bundle.json); accepted: a directory written by "
                                "`python -m mmnar_core train`, e.g. assets/demo_bundle")
    if args.device:
        from mmnar_core.encoders.runtime import pick_device

        pick_device(args.device)  # a clear error now, not in the loader thread
    config = ServeConfig(host=args.host, port=args.port, log_level=args.log_level, device=args.device,
                         threads=args.threads, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                         max_queue=args.max_queue, batch_mode=args.batch_mode, request_timeout_s=args.timeout,
                         max_request_bytes=int(args.max_request_mb * 2**20),
                         max_image_bytes=int(args.max_image_mb * 2**20), auth_token_file=args.auth_token_file,
                         oidc_issuer=args.oidc_issuer, oidc_audience=args.oidc_audience,
                         oidc_role_claim=args.oidc_role_claim, oidc_role_map=args.oidc_role_map)
    if config.auth_configured:
        from mmnar_core.serving.auth import Authenticator

        Authenticator.from_config(config)  # a bad token file or issuer fails now, with exit status 2
    if args.ray:  # Ray Serve scale-out of the same app (mmnar_core/serving/ray_app.py, docs/scale.md)
        from mmnar_core.serving.ray_app import main_ray

        return main_ray(args, config)
    from mmnar_core.serving.server import run

    run(bundle, config, image_weights=args.image_weights, text_model=args.text_model)
    return 0
