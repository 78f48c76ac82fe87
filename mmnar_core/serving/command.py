"""`python -m mmnar_core serve BUNDLE_DIR`: serve one model bundle over HTTP (docs/serving.md)."""

from __future__ import annotations

from pathlib import Path

from mmnar_core.arg_types import non_negative_int, positive
from mmnar_core.serving.config import ServeConfig

_DEFAULTS = ServeConfig()


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a model bundle over HTTP (predict, what-if, explain; micro-batched)",
        description="Loads the bundle once (GPU when present, else CPU) and answers POST /predict, /what-if and "
        "/explain with multipart inputs validated as the app validates them. GET /health, /ready, /info, /stats, "
        "/pattern-counts, /docs. See docs/serving.md.",
    )
    parser.add_argument(
        "bundle",
        metavar="BUNDLE_DIR",
        help="model bundle directory (e.g. the demo bundle, mmnar_core/resources/demo_bundle)",
    )
    parser.add_argument("--host", default=_DEFAULTS.host, help=f"address to listen on (default {_DEFAULTS.host})")
    parser.add_argument("--port", type=int, default=_DEFAULTS.port, help=f"port (default {_DEFAULTS.port})")
    parser.add_argument(
        "--max-batch", type=int, default=_DEFAULTS.max_batch, help=f"requests per batch (default {_DEFAULTS.max_batch})"
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=_DEFAULTS.max_wait_ms,
        help=f"how long a batch waits for more requests after its first (default {_DEFAULTS.max_wait_ms:g})",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=_DEFAULTS.max_queue,
        help=f"waiting requests before 503 + Retry-After (default {_DEFAULTS.max_queue})",
    )
    parser.add_argument(
        "--batch-mode",
        choices=ServeConfig.BATCH_MODES,
        default=_DEFAULTS.batch_mode,
        help="exact: bit-identical to the in-process predictor (default); stacked: one CNN / "
        "transformer / fused forward per batch (faster, last-bit differences)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=_DEFAULTS.request_timeout_s,
        help=f"seconds a request may wait and run before 504 (default {_DEFAULTS.request_timeout_s:g})",
    )
    parser.add_argument(
        "--max-request-mb",
        type=float,
        default=_DEFAULTS.max_request_bytes / 2**20,
        help=f"largest request body in MB before 413 (default {_DEFAULTS.max_request_bytes / 2**20:g})",
    )
    parser.add_argument(
        "--max-image-mb",
        type=float,
        default=_DEFAULTS.max_image_bytes / 2**20,
        help=f"largest image file in MB (default {_DEFAULTS.max_image_bytes / 2**20:g})",
    )
    _limit_arguments(parser)
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present, else CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--image-weights",
        default=None,
        help="image encoder weights the bundle was trained with (default: the shipped ones)",
    )
    parser.add_argument("--text-model", default=None, help="local text model folder the bundle was trained with")
    parser.add_argument(
        "--log-level", default=_DEFAULTS.log_level, choices=["critical", "error", "warning", "info", "debug"]
    )
    auth = parser.add_argument_group("authentication (none configured: the server is open; docs/serving.md)")
    auth.add_argument(
        "--auth-token-file",
        default=None,
        metavar="FILE",
        help="bearer tokens with their user and role (`python -m mmnar_core serve-token add FILE ...`)",
    )
    auth.add_argument(
        "--oidc-issuer",
        default=None,
        metavar="URL",
        help="accept OIDC access tokens (JWTs) of this issuer, checked against its JWKS",
    )
    auth.add_argument("--oidc-audience", default=None, metavar="AUD", help="the audience those tokens must carry")
    auth.add_argument(
        "--oidc-role-claim",
        default=_DEFAULTS.oidc_role_claim,
        metavar="CLAIM",
        help=f"claim holding the role(s) (default {_DEFAULTS.oidc_role_claim})",
    )
    auth.add_argument(
        "--oidc-role-map",
        default=_DEFAULTS.oidc_role_map,
        metavar="VALUE=ROLE,...",
        help="map claim values to roles clinician / reviewer / admin",
    )
    parser.add_argument(
        "--pattern-counts-file",
        default=None,
        metavar="FILE.json",
        help="keep the count of patients per availability pattern (no patient data; GET "
        "/pattern-counts, `python -m mmnar_core drift BUNDLE --counts FILE`) in FILE across restarts "
        "(default: in memory only)",
    )
    from mmnar_core.serving.ray_app import add_ray_arguments  # --ray --replicas ... (cheap: Ray loads on use)

    add_ray_arguments(parser)
    parser.set_defaults(func=run_command)
    from mmnar_core.serving.auth import register_token_command

    register_token_command(subparsers)


def _limit_arguments(parser) -> None:
    """The issue-18 limits: connections, admission before the body is read, work in the queue."""
    d = _DEFAULTS
    limits = parser.add_argument_group('connection and work limits (docs/serving.md, "Limits")')
    limits.add_argument(
        "--header-timeout",
        type=positive(float, "seconds"),
        default=d.header_timeout_s,
        metavar="S",
        help=f"seconds a connection has to send a request's headers (default {d.header_timeout_s:g})",
    )
    limits.add_argument(
        "--body-timeout",
        type=positive(float, "seconds"),
        default=d.body_timeout_s,
        metavar="S",
        help=f"seconds the whole body has to arrive before 408 (default {d.body_timeout_s:g})",
    )
    limits.add_argument(
        "--keep-alive",
        type=positive(float, "seconds"),
        default=d.keep_alive_s,
        metavar="S",
        help=f"seconds an idle connection stays open between requests (default {d.keep_alive_s:g})",
    )
    limits.add_argument(
        "--max-connections",
        type=positive(int),
        default=d.max_connections,
        metavar="N",
        help=f"open connections before uvicorn answers 503 (default {d.max_connections})",
    )
    limits.add_argument(
        "--max-inflight",
        type=positive(int),
        default=None,
        metavar="N",
        help="requests admitted at once (read, parsed, queued or running) before 503, checked before "
        "the body is read (default: --max-queue + --max-batch)",
    )
    limits.add_argument(
        "--max-inflight-mb",
        type=positive(float, "MB"),
        default=d.max_inflight_bytes / 2**20,
        metavar="MB",
        help=f"declared bodies of the admitted requests together, in MB (default {d.max_inflight_bytes / 2**20:g})",
    )
    limits.add_argument(
        "--max-parsing",
        type=positive(int),
        default=d.max_parsing,
        metavar="N",
        help=f"requests parsed and decoded at once (default {d.max_parsing})",
    )
    limits.add_argument(
        "--max-queue-work",
        type=positive(float, "units of work"),
        default=d.max_queue_work,
        metavar="UNITS",
        help="work waiting in the queue before 503, in units of about one model pass "
        f"(an explanation of a 20,000-character note 361; default {d.max_queue_work:g})",
    )
    limits.add_argument(
        "--max-structured-mb",
        type=positive(float, "MB"),
        default=d.max_structured_bytes / 2**20,
        metavar="MB",
        help=f"largest CSV / JSON / FHIR input in MB before 413 (default {d.max_structured_bytes / 2**20:g})",
    )
    limits.add_argument(
        "--max-text-chars",
        type=positive(int),
        default=d.max_text_chars,
        metavar="N",
        help=f"longest note in characters (default {d.max_text_chars:,}; explanations attribute the first 20,000)",
    )
    limits.add_argument(
        "--explain-cache",
        type=non_negative_int,
        default=d.explain_cache_size,
        metavar="N",
        help=f"explanations kept for repeated requests, 0 for none (default {d.explain_cache_size})",
    )


def config_from_args(args) -> ServeConfig:
    """The ServeConfig of parsed `serve` arguments (ValueError naming every bad setting)."""
    return ServeConfig(
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        device=args.device,
        threads=args.threads,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        batch_mode=args.batch_mode,
        request_timeout_s=args.timeout,
        max_request_bytes=int(args.max_request_mb * 2**20),
        max_image_bytes=int(args.max_image_mb * 2**20),
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        keep_alive_s=args.keep_alive,
        max_connections=args.max_connections,
        max_inflight=args.max_inflight,
        max_inflight_bytes=int(args.max_inflight_mb * 2**20),
        max_parsing=args.max_parsing,
        max_queue_work=args.max_queue_work,
        max_structured_bytes=int(args.max_structured_mb * 2**20),
        max_text_chars=args.max_text_chars,
        explain_cache_size=args.explain_cache,
        auth_token_file=args.auth_token_file,
        oidc_issuer=args.oidc_issuer,
        oidc_audience=args.oidc_audience,
        oidc_role_claim=args.oidc_role_claim,
        oidc_role_map=args.oidc_role_map,
        pattern_counts_file=getattr(args, "pattern_counts_file", None),
    )


def run_command(args) -> int:
    config = config_from_args(args)  # a bad limit fails before the bundle is looked at
    bundle = Path(args.bundle)
    if not (bundle / "bundle.json").is_file():
        from mmnar_core.resources import DEMO_BUNDLE

        raise FileNotFoundError(
            f"{bundle} is not a model bundle (no bundle.json); accepted: a directory written by "
            f"`python -m mmnar_core train`, e.g. the demo bundle {DEMO_BUNDLE}"
        )
    if args.device:
        from mmnar_core.encoders.runtime import pick_device

        pick_device(args.device)  # a clear error now, not in the loader thread
    if config.pattern_counts_file:
        if args.ray:
            raise ValueError(
                "--pattern-counts-file is for one server process: Ray Serve replicas would each "
                'overwrite the file with their own counts (docs/serving.md, "Ordering-policy drift")'
            )
        from mmnar_core.serving.pattern_counter import PatternCounter

        PatternCounter.check_file(config.pattern_counts_file)  # a bad file fails now, with exit status 2
    if config.auth_configured:
        from mmnar_core.serving.auth import Authenticator

        Authenticator.from_config(config)  # a bad token file or issuer fails now, with exit status 2
    if args.ray:  # Ray Serve scale-out of the same app (mmnar_core/serving/ray_app.py, docs/scale.md)
        from mmnar_core.serving.ray_app import main_ray

        return main_ray(args, config)
    from mmnar_core.serving.server import run

    run(bundle, config, image_weights=args.image_weights, text_model=args.text_model)
    return 0
