"""Every setting of the model server, with its default, in one place (the CLI, `create_app` and the Ray
deployment all take a `ServeConfig`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

MB = 2**20


@dataclass(frozen=True)
class ServeConfig:
    """Settings of `mmnar_core.serving.server.create_app` and `python -m mmnar_core serve` (docs/serving.md)."""

    # where uvicorn listens (used by the CLI only; create_app ignores them)
    host: str = "127.0.0.1"
    port: int = 8765
    log_level: str = "info"
    # model
    device: str | None = None  # None: CUDA when present, else CPU (mmnar_core.encoders.runtime.pick_device)
    threads: int | None = None  # torch intra-op threads (None: leave torch's default)
    # micro-batching
    max_batch: int = 8  # requests the worker takes at once
    max_wait_ms: float = 10.0  # how long the worker waits for more requests after the first one
    max_queue: int = 64  # requests waiting beyond the one batch in progress; more -> 503 + Retry-After
    batch_mode: str = "exact"  # 'exact': per-patient forwards, bit-identical to Predictor.predict; 'stacked': one CNN /
    #                            transformer / fused forward per batch (faster, may differ in the last float bits)
    # work limits (issue 18): the queue counts work, requests are admitted before their body is read
    max_queue_work: float = 4_000.0  # units of work waiting (mmnar_core.serving.work: an explain of a 20,000-char
    #                                 note 361, a predict 1-2); more -> 503 + Retry-After
    max_inflight: int | None = None  # requests admitted at once (read, parsed, queued or running); None:
    #                                  max_queue + max_batch; more -> 503 before the body is read
    max_inflight_bytes: int = 192 * MB  # their declared bodies together (no Content-Length: max_request_bytes)
    max_parsing: int = 2  # requests parsed and decoded at once (CPU work: about one per core)
    # admission by work (mmnar_core.serving.work_budget): the starting rates, then measured while serving
    decode_s_per_mpixel: float = 0.06  # seconds to decode one megapixel (2-core CPU: 0.07-0.12 measured at load 2-9)
    model_s_per_unit: float = 0.2  # seconds per unit of model work (mmnar_core.serving.work; the demo model on CPU)
    # time limits
    request_timeout_s: float = 120.0  # from arrival to answer; exceeded -> 504, and the work is stopped
    retry_after_s: int = 1  # the smallest Retry-After of a 503 (it grows with the expected wait)
    # connections (uvicorn; mmnar_core.serving.transport)
    header_timeout_s: float = 10.0  # a connection must send a request's headers within this, else it is closed
    body_timeout_s: float = 30.0  # the whole body must arrive within this, else 408
    keep_alive_s: float = 5.0  # an idle connection between requests is closed after this
    max_connections: int = 256  # open connections (and requests in progress); more -> 503 from uvicorn
    # size limits (over -> 413)
    max_request_bytes: int = 48 * MB  # the whole multipart body
    max_image_bytes: int = 20 * MB  # each image file (as the app)
    max_structured_bytes: int = 5 * MB  # a CSV / JSON / FHIR file, or the `structured` JSON field (as the app)
    max_text_chars: int = 200_000  # each note (as the app)
    # explanations
    explain_cache_size: int = 64  # explanations kept by cache_key (0: no cache)
    load_in_background: bool = True  # /health answers and /ready says 503 while the model loads
    # ordering-policy drift (mmnar_core.serving.pattern_counter): counts per availability pattern, no patient data
    pattern_counts_file: str | None = None  # JSON file keeping them across restarts (None: memory only)
    pattern_counts_flush_s: float = 10.0  # the file is written at most this often while counting, and at shutdown
    # authentication (mmnar_core.serving.auth; none configured = open, with a warning at start)
    auth_token_file: str | None = None  # static bearer tokens: `python -m mmnar_core serve-token add FILE ...`
    oidc_issuer: str | None = None  # OIDC access tokens (JWTs) of this issuer (https; http only on loopback) ...
    oidc_audience: str | None = None  # ... for this audience (both or neither)
    oidc_role_claim: str = "roles"  # the claim holding the role(s): a string or a list
    oidc_role_map: str = ""  # 'claim value=role,...' (values equal to a role name count as that role)
    oidc_leeway_s: float = 30.0  # clock skew allowed on exp / nbf / iat

    BATCH_MODES = ("exact", "stacked")

    def __post_init__(self):
        problems = []
        if self.max_batch < 1:
            problems.append(f"max_batch must be at least 1 (got {self.max_batch})")
        if self.max_queue < 1:
            problems.append(f"max_queue must be at least 1 (got {self.max_queue})")
        if self.max_wait_ms < 0:
            problems.append(f"max_wait_ms must be >= 0 (got {self.max_wait_ms})")
        if self.request_timeout_s <= 0:
            problems.append(f"request_timeout_s must be > 0 (got {self.request_timeout_s})")
        if self.batch_mode not in self.BATCH_MODES:
            problems.append(f"batch_mode must be one of {', '.join(self.BATCH_MODES)} (got {self.batch_mode!r})")
        for name in (
            "max_request_bytes",
            "max_image_bytes",
            "max_structured_bytes",
            "max_text_chars",
            "max_queue_work",
            "max_inflight_bytes",
            "max_connections",
            "max_parsing",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be positive (got {getattr(self, name)})")
        for name in ("header_timeout_s", "body_timeout_s", "keep_alive_s", "decode_s_per_mpixel", "model_s_per_unit"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0 seconds (got {getattr(self, name)})")
        if self.max_inflight_bytes < self.max_request_bytes:
            problems.append(
                f"max_inflight_bytes ({self.max_inflight_bytes:,}) must be at least max_request_bytes "
                f"({self.max_request_bytes:,}): a request of the largest accepted size would always be "
                "refused as busy"
            )
        if self.max_inflight is not None and self.max_inflight < 1:
            problems.append(f"max_inflight must be at least 1 or None (got {self.max_inflight})")
        if bool(self.oidc_issuer) != bool(self.oidc_audience):
            problems.append(
                "oidc_issuer and oidc_audience go together (got "
                f"{'an issuer' if self.oidc_issuer else 'an audience'} only)"
            )
        if not self.pattern_counts_flush_s >= 0:
            problems.append(f"pattern_counts_flush_s must be >= 0 seconds (got {self.pattern_counts_flush_s})")
        if self.oidc_leeway_s < 0:
            problems.append(f"oidc_leeway_s must be >= 0 (got {self.oidc_leeway_s})")
        if problems:
            raise ValueError("invalid ServeConfig: " + "; ".join(problems))

    @property
    def inflight_limit(self) -> int:
        return self.max_inflight if self.max_inflight is not None else self.max_queue + self.max_batch

    @property
    def auth_configured(self) -> bool:
        return bool(self.auth_token_file or self.oidc_issuer)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ServeConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown ServeConfig setting(s): {', '.join(unknown)}; accepted: {', '.join(sorted(known))}"
            )
        return cls(**data)

    def with_(self, **changes) -> ServeConfig:
        return replace(self, **changes)
