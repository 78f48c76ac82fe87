"""The model server: `create_app(predictor_or_factory, ServeConfig()) -> FastAPI` (docs/serving.md).

Creating the app has no side effects: the model is loaded (once) when the app starts (its lifespan, or
the first request when a host such as Ray Serve does not run lifespans), in a background thread so
GET /health answers at once and GET /ready says 503 until the model is there. One worker thread owns
the model; requests reach it through a queue bounded in requests and in work (micro-batching,
mmnar_core.serving.batching; work units in mmnar_core.serving.work). A model request is admitted or
refused from its headers before its body is read (mmnar_core.serving.admission); its body must arrive
within `body_timeout_s`; its work stops when its client goes away or its deadline passes
(mmnar_core.cancel). Connection limits are uvicorn's (mmnar_core.serving.transport).

    uvicorn: python -m mmnar_core serve BUNDLE_DIR --port 8765
    in code: app = create_app(lambda: Predictor.load(bundle_dir), ServeConfig(max_batch=16))
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from mmnar_core import __version__
from mmnar_core.cancel import Cancelled, CancelToken
from mmnar_core.encoders.errors import EncoderInputError
from mmnar_core.explain.explanation import ExplanationCache
from mmnar_core.inputs import InputError, InputErrors
from mmnar_core.results import ALL_TASKS
from mmnar_core.serving.batching import Batcher, Job, Overloaded
from mmnar_core.serving.config import ServeConfig
from mmnar_core.serving.parsing import (
    MULTIPART_ACCEPTED,
    ParsedRequest,
    RequestError,
    Schema,
    parse_multipart,
    parse_request,
)
from mmnar_core.serving.runner import PredictorRunner

if TYPE_CHECKING:
    from mmnar_core.model_info import ModelInfo
    from mmnar_core.serving.admission import Admission
    from mmnar_core.serving.work_budget import WorkBudget

__all__ = ["ServeConfig", "ServeState", "create_app", "run"]

log = logging.getLogger("mmnar_core.serving")
ENDPOINTS = {"predict": "/predict", "what_if": "/what-if", "explain": "/explain"}


# ------------------------------------------------------------------------------------------------ OpenAPI models
class ErrorItem(BaseModel):
    field: str
    problem: str
    accepted: str
    feature: str | None = None
    message: str
    status: int


class ErrorBody(BaseModel):
    errors: list[ErrorItem]
    status: int


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorBody,
        "description": "Malformed request: broken multipart, a field the endpoint does not know "
        "or given twice, `structured` not a JSON object",
    },
    413: {"model": ErrorBody, "description": "Over a size limit (the body, an image, a structured file, a note)"},
    415: {
        "model": ErrorBody,
        "description": "Not multipart/form-data, or a file of a kind the field does not accept "
        "(a PDF as the X-ray, a workbook as the CSV, a binary as a note)",
    },
    422: {
        "model": ErrorBody,
        "description": "Invalid content: damaged / truncated image, DICOM without pixel data, CSV "
        "columns, values out of range or in another unit, note not UTF-8 or "
        "empty, malformed FHIR, unknown task",
    },
    408: {"model": ErrorBody, "description": "The request body did not arrive within the body timeout"},
    503: {
        "model": ErrorBody,
        "description": "The model is still loading, too many requests or too much work are "
        "in progress (refused before the body is read), or the queue is full "
        "(see Retry-After)",
    },
    504: {"model": ErrorBody, "description": "No answer within the request timeout"},
}


def _error(status: int, field: str, problem: str, accepted: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(
        RequestError.one(status, field, problem, accepted).to_dict(), status_code=status, headers=headers
    )


# ------------------------------------------------------------------------------------------------ state
class ServeState:
    """The model, its worker and its counters for one app (one process, one model)."""

    def __init__(self, predictor_or_factory, config: ServeConfig):
        self.config = config
        self._given: Any  # a Predictor, or an object with its interface (tests)
        self._factory: Callable[[], Any] | None
        if hasattr(predictor_or_factory, "predict") and hasattr(predictor_or_factory, "encode"):
            self._given, self._factory = predictor_or_factory, None
        elif callable(predictor_or_factory):
            self._given, self._factory = None, predictor_or_factory
        else:
            raise TypeError(
                f"create_app needs a Predictor or a callable returning one, got {type(predictor_or_factory).__name__}"
            )
        self.predictor: Any = None
        self.info: ModelInfo | None = None
        self.schema: Schema | None = None
        self.runner: PredictorRunner | None = None
        self.batcher: Batcher | None = None
        self.cache = ExplanationCache(config.explain_cache_size)
        self.load_error: str | None = None
        self.load_seconds: float | None = None
        self.started_at = time.time()
        self._lock = threading.Lock()
        self._started = False
        self._loader: threading.Thread | None = None
        self.admission: Admission | None = None  # set by create_app (mmnar_core.serving.admission.Admission)
        self.work_budget: WorkBudget | None = None  # set by create_app (mmnar_core.serving.work_budget)
        from mmnar_core.serving.pattern_counter import PatternCounter

        self.patterns = PatternCounter(config.pattern_counts_file, flush_every_s=config.pattern_counts_flush_s)

    @property
    def ready(self) -> bool:
        return self.predictor is not None

    @property
    def loading(self) -> bool:
        return self._started and not self.ready and self.load_error is None

    def start(self) -> None:
        """Idempotent: load the model (in the background unless configured otherwise) and start the worker."""
        with self._lock:
            if self._started:
                return
            self._started = True
        if not self.config.auth_configured:
            log.warning(
                "no authentication configured: every endpoint of this model server is open to anyone who "
                "can reach it; use --auth-token-file and/or --oidc-issuer/--oidc-audience "
                "(docs/serving.md#authentication)"
            )
        if self.config.threads:
            import torch

            torch.set_num_threads(int(self.config.threads))
        if self._given is not None or not self.config.load_in_background:
            self._load()
        else:
            from mmnar_core.background import start_background

            self._loader, _ = start_background(lambda _stop: self._load(), "mmnar-model-loader")

    def _load(self) -> None:
        from mmnar_core.model_info import model_info

        started = time.perf_counter()
        try:
            predictor = self._given if self._factory is None else self._factory()  # one of the two is set
            info = model_info(predictor)
            schema = Schema.of(predictor)
            self.patterns.bind(info.model_id, [m.name for m in schema.modalities])
        except Exception as error:  # reported by /ready; /health stays up so an operator can see why
            log.exception("loading the model failed")
            self.load_error = f"{type(error).__name__}: {error}"
            return
        runner = PredictorRunner(predictor, self.config.batch_mode, self.cache)
        batcher = Batcher(
            runner,
            self.config.max_batch,
            self.config.max_wait_ms / 1000.0,
            self.config.max_queue,
            self.config.retry_after_s,
            max_work=self.config.max_queue_work,
            observer=self.work_budget.observe_model if self.work_budget is not None else None,
        )
        batcher.start()
        self.info, self.schema, self.runner, self.batcher = info, schema, runner, batcher
        self.load_seconds = time.perf_counter() - started
        self.predictor = predictor  # last: marks the server ready
        log.info("model %s ready on %s in %.1f s", info.model_id, info.device, self.load_seconds)

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """For tests and embedding code: start and block until the model is loaded (or failed)."""
        self.start()
        deadline = time.monotonic() + timeout
        while not self.ready and self.load_error is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.ready

    def stop(self) -> None:
        """Waits for a model load in progress (it cannot be interrupted; ending the interpreter inside it
        aborts the process), then stops the worker."""
        from mmnar_core.background import stop_and_join

        stop_and_join(self._loader, None)
        if self.batcher is not None:
            self.batcher.stop()
        try:
            self.patterns.flush()
        except OSError as error:
            log.error("writing the pattern counts file failed: %s", error)

    async def count_pattern(self, parsed: ParsedRequest) -> None:
        """One more patient with this availability pattern (once per input hash among recent requests);
        the counts file, when due, is written off the event loop. Never fails the request."""
        from mmnar_core.patterns import encode_pattern

        try:
            schema = self.schema
            if schema is None:
                raise RuntimeError("the model is not loaded")
            pattern = int(encode_pattern(parsed.record.availability(schema.modalities, schema.features)))
            if self.patterns.add(pattern, parsed.input_hash):
                await run_in_threadpool(self.patterns.flush)
        except Exception as error:  # the answer matters more than the statistics
            log.error("counting the availability pattern failed: %s: %s", type(error).__name__, error)

    def stats(self) -> dict:
        out: dict[str, Any] = {
            "ready": self.ready,
            "model_id": self.info.model_id if self.info else None,
            "uptime_s": round(time.time() - self.started_at, 3),
        }
        if self.batcher is not None:
            out.update(self.batcher.stats())
        if self.runner is not None:
            out.update(self.runner.stats())
        if self.admission is not None:
            out.update(self.admission.stats())
            # every overload refusal, whether before the body was read or at the queue
            out["rejected"] = out.get("rejected", 0) + out["refused_before_reading"]
        if self.work_budget is not None:
            out.update(self.work_budget.stats())
            out["rejected"] = out.get("rejected", 0) + out["refused_busy_by_work"] + out["refused_too_much_work"]
        out["request_timeout_s"] = self.config.request_timeout_s
        return out


# ------------------------------------------------------------------------------------------------ app
def create_app(predictor_factory: Callable[[], Any] | Any, config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI app serving one model. `predictor_factory` is a Predictor (already loaded, e.g. shared
    with tests) or a callable returning one (called once, at startup). Nothing is loaded here."""
    config = config or ServeConfig()
    from mmnar_core.serving.auth import Authenticator, BearerAuthMiddleware

    authenticator = Authenticator.from_config(config)  # reads the token file: a bad one fails here, not per request
    state = ServeState(predictor_factory, config)
    from mmnar_core.serving.admission import Admission, AdmissionMiddleware
    from mmnar_core.serving.query_tokens import QueryTokenRefusal

    admission = Admission(config.inflight_limit, config.max_inflight_bytes, config.max_request_bytes)
    state.admission = admission
    from mmnar_core.serving.work_budget import WorkBudget

    state.work_budget = WorkBudget(
        config.max_parsing, config.decode_s_per_mpixel, config.model_s_per_unit, config.retry_after_s
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.start()
        try:
            yield
        finally:
            state.stop()

    app = FastAPI(
        title="MMNAR risk model server",
        version=__version__,
        lifespan=lifespan,
        description="Risk prediction, what-if over modality subsets and explanations for one patient's "
        "multimodal inputs (docs/serving.md). The demo model is trained on synthetic data: "
        "not for clinical use.",
    )
    app.state.serving = state
    app.state.authenticator = authenticator
    # the last added runs first: query-string credentials refused, then the token checked, then admission
    app.add_middleware(AdmissionMiddleware, admission=admission, state=state)
    if authenticator is not None:
        app.add_middleware(BearerAuthMiddleware, authenticator=authenticator)
        log.info("authentication: %s", authenticator.describe())
    app.add_middleware(QueryTokenRefusal)

    def not_ready() -> JSONResponse:
        if state.load_error is not None:
            return _error(
                503,
                "model",
                f"the model could not be loaded ({state.load_error})",
                "a server whose model loaded; see its log",
            )
        return _error(
            503, "model", "the model is still loading", "retry in a few seconds", headers={"Retry-After": "5"}
        )

    # ---------------------------------------------------------------- probes
    @app.get("/health", summary="Liveness: 200 while the process runs")
    async def health():
        state.start()
        return {"status": "ok", "ready": state.ready, "loading": state.loading}

    @app.get(
        "/ready",
        summary="Readiness: 200 once the model is loaded, else 503",
        responses={503: {"description": "Loading, or the model failed to load"}},
    )
    async def ready():
        state.start()
        if state.ready:
            return {
                "ready": True,
                "model_id": state.info.model_id,
                "device": state.info.device,
                "load_seconds": round(state.load_seconds or 0.0, 3),
            }
        headers = {"Retry-After": "5"} if state.load_error is None else None
        return JSONResponse(
            {"ready": False, "loading": state.loading, "error": state.load_error}, status_code=503, headers=headers
        )

    @app.get(
        "/info",
        summary="ModelInfo: version, hash, tasks, modalities, features, model card, metrics",
        responses={503: ERROR_RESPONSES[503]},
    )
    async def info():
        state.start()
        if not state.ready:
            return not_ready()
        return state.info.to_dict()

    @app.get("/stats", summary="Batching counters: batches, requests per batch, queue depth, rejected, timeouts")
    async def stats():
        state.start()
        return state.stats()

    @app.get(
        "/pattern-counts",
        summary="Patients served per availability pattern (counts only, no patient data) "
        "and the ordering-policy drift report against the training mix",
        responses={503: ERROR_RESPONSES[503]},
    )
    async def pattern_counts():
        state.start()
        if not state.ready:
            return not_ready()
        return await run_in_threadpool(_pattern_counts, state)

    # ---------------------------------------------------------------- model endpoints
    async def serve(request: Request, kind: str):
        arrived = time.monotonic()
        state.start()
        if not state.ready:
            return not_ready()
        info, schema, batcher, budget = state.info, state.schema, state.batcher, state.work_budget
        if info is None or schema is None or batcher is None or budget is None:  # never: all set before ready
            return not_ready()
        deadline = arrived + config.request_timeout_s
        content_type = request.headers.get("content-type")
        try:
            if not (content_type or "").lower().startswith("multipart/form-data"):
                raise RequestError.one(
                    415,
                    "Content-Type",
                    f"the request body is {content_type or 'not typed'}, not multipart/form-data",
                    MULTIPART_ACCEPTED,
                )
            body = await _read_body(request, config.max_request_bytes, config.body_timeout_s)
            parts, work = await run_in_threadpool(_split, body, content_type, schema, kind, config)
            del body
        except RequestError as error:  # a body left unread (408, 413): the connection cannot be reused
            close = {"Connection": "close"} if error.status in (408, 413) else None
            return JSONResponse(error.to_dict(), status_code=error.status, headers=close)
        # admission by work, before any decoding: the work admitted ahead of it and its own must fit its deadline
        verdict = budget.admit(work, deadline - time.monotonic())
        if not verdict.admitted:
            return _refuse_work(verdict, work, config)
        try:
            return await serve_admitted(request, kind, parts, work, info, schema, batcher, budget, arrived)
        finally:
            budget.done(work)

    async def serve_admitted(request, kind, parts, work, info, schema, batcher, budget, arrived):
        deadline = arrived + config.request_timeout_s
        decoded = False
        try:
            try:  # decoding is bounded by cores; admission keeps the wait for a slot within the deadline
                await asyncio.wait_for(parse_slots.acquire(), deadline - time.monotonic())
            except TimeoutError:
                return _error(
                    504,
                    "request",
                    f"not decoded within the request timeout of {config.request_timeout_s:g} s (the server is busy)",
                    "a retry later",
                )
            try:
                started = time.monotonic()
                parsed = await run_in_threadpool(_prepare, parts, schema, kind, config)
                budget.decoded(work, time.monotonic() - started)
                decoded = True
            finally:
                parse_slots.release()
            del parts
        except RequestError as error:
            return JSONResponse(error.to_dict(), status_code=error.status)
        finally:
            if not decoded:
                budget.decoded(work, None)
        from mmnar_core.explain.explanation import task_cache_key

        if kind == "explain":
            parsed.cache_key = task_cache_key(parsed.input_hash, info.model_id, parsed.task, parsed.modalities)
            cached = state.cache.get(parsed.cache_key)
            if cached is not None:
                await state.count_pattern(parsed)
                return _answer(cached, parsed, info.model_id)
        remaining = deadline - time.monotonic()
        job = Job(kind, parsed, cost=work.units, cancel=CancelToken(max(remaining, 0.001)))
        try:
            future = batcher.submit(job)
        except Overloaded as error:
            limit = (
                f"work limit {config.max_queue_work:g} units"
                if error.work is not None
                else f"queue limit {config.max_queue}"
            )
            return _error(
                503,
                "request",
                f"{error} ({limit}); retry after {error.retry_after} s",
                "a retry after the Retry-After delay",
                headers={"Retry-After": str(error.retry_after)},
            )
        try:
            result = await _wait(future, job, request, deadline)
        except (TimeoutError, Cancelled) as error:
            if isinstance(error, Cancelled) and job.cancel.reason == CLIENT_GONE:
                return _error(499, "request", "the client closed the connection", "")  # nobody reads it
            batcher.note_timeout()
            return _error(
                504,
                "request",
                f"no answer within the request timeout of {config.request_timeout_s:g} s "
                "(the server is busy or the request is slow); its work was stopped",
                "a retry later, or a server started with a longer --timeout",
            )
        except (InputError, InputErrors) as error:
            return JSONResponse(RequestError([(422, e) for e in error.errors]).to_dict(), status_code=422)
        except EncoderInputError as error:
            return _error(422, "inputs", str(error), "inputs the model's encoders can read (docs/inputs.md)")
        except Exception as error:  # a bug, not the user's input: a short JSON message, the traceback in the log
            log.error(
                "%s failed: %s: %s",
                ENDPOINTS[kind],
                type(error).__name__,
                error,
                exc_info=(type(error), error, error.__traceback__),
            )
            return _error(
                500,
                "server",
                f"internal error ({type(error).__name__}: {error})",
                "please report it with the server log",
            )
        await state.count_pattern(parsed)
        return _answer(result, parsed, info.model_id)

    parse_slots = asyncio.Semaphore(config.max_parsing)

    def form_body(kind: str) -> dict:
        return {
            "requestBody": {
                "required": True,
                "content": {"multipart/form-data": {"schema": _form_schema(kind, state.schema)}},
            }
        }

    @app.post(
        "/predict",
        summary="Risks of one patient (Prediction)",
        responses=ERROR_RESPONSES,
        openapi_extra=form_body("predict"),
    )
    async def predict(request: Request):
        return await serve(request, "predict")

    @app.post(
        "/what-if",
        summary="Risks under every subset of the available modalities, modality Shapley values, "
        "value of absent modalities (WhatIfResult)",
        responses=ERROR_RESPONSES,
        openapi_extra=form_body("what_if"),
    )
    async def what_if(request: Request):
        return await serve(request, "what_if")

    @app.post(
        "/explain",
        summary="Prediction, what-if and attributions within each modality for one outcome (Explanation)",
        responses=ERROR_RESPONSES,
        openapi_extra=form_body("explain"),
    )
    async def explain(request: Request):
        return await serve(request, "explain")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception):
        log.error("unexpected error on %s", request.url.path, exc_info=(type(error), error, error.__traceback__))
        return _error(500, "server", f"internal error ({type(error).__name__})", "please report it with the server log")

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for kind, path in ENDPOINTS.items():  # the form fields of the loaded model
            schema["paths"][path]["post"]["requestBody"] = form_body(kind)["requestBody"]
        if authenticator is not None:
            _document_auth(schema)
        if state.ready:
            app.openapi_schema = schema  # cached only once the model's fields are known
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema
    return app


def _document_auth(schema: dict) -> None:
    """The bearer scheme, and the 401 / 403 answers, on every operation but the probes."""
    from mmnar_core.serving.auth import OPEN_PATHS

    schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "a token from `python -m mmnar_core serve-token add`, or an OIDC access token",
    }
    for path, operations in schema.get("paths", {}).items():
        if path in OPEN_PATHS:
            continue
        for operation in operations.values():
            operation["security"] = [{"bearerAuth": []}]
            operation.setdefault("responses", {}).update(
                {
                    "401": {
                        "description": "No, a malformed, an unknown or an expired token (WWW-Authenticate: Bearer)"
                    },
                    "403": {"description": "The token's role may not use this endpoint"},
                }
            )


def _split(body: bytes, content_type: str | None, schema: Schema, kind: str, config: ServeConfig):
    """(parts, RequestWork): the multipart parts and the work they bring, from headers only (no decoding)."""
    from mmnar_core.encoders.config import ImageEncoderConfig
    from mmnar_core.serving.work import request_work

    parts = parse_multipart(body, content_type)
    return parts, request_work(kind, parts, schema, ImageEncoderConfig().max_pixels, config.max_text_chars)


def _prepare(parts, schema: Schema, kind: str, config: ServeConfig):
    """Validate one request's parts and hash its inputs (CPU work: decoding images, off the event loop)."""
    from mmnar_core.explain.explanation import input_hash

    parsed = parse_request(
        parts, schema, kind, config.max_image_bytes, config.max_structured_bytes, config.max_text_chars
    )
    parsed.input_hash = input_hash(parsed.record)
    return parsed


def _refuse_work(verdict, work, config: ServeConfig) -> JSONResponse:
    """The answer to a request admission by work refused: 503 + Retry-After (busy) or 413 (too much work)."""
    what = f"{work.decode_mpixels:.1f} megapixels to decode and {work.units:g} units of model work"
    if verdict.status == 503:
        return _error(
            503,
            "request",
            f"the server is busy: the work admitted before this request ends in about "
            f"{verdict.estimate_s - verdict.own_s:.1f} s, and this one ({what}, about {verdict.own_s:.1f} s) "
            "would not be answered within the request timeout "
            f"of {config.request_timeout_s:g} s; retry after {verdict.retry_after} s",
            "a retry after the Retry-After delay (nothing was decoded)",
            headers={"Retry-After": str(verdict.retry_after)},
        )
    return _error(
        413,
        "request",
        f"this request is more work than the server can do within its request timeout of "
        f"{config.request_timeout_s:g} s: {what}, about {verdict.own_s:.1f} s at the measured rates",
        "a smaller image, a shorter note, fewer modalities to attribute (the `modalities` field of /explain), "
        "or a server started with a longer --timeout",
    )


def _pattern_counts(state: ServeState) -> dict:
    """GET /pattern-counts: the counts document and, when the bundle has training counts, the drift report."""
    from mmnar_core.drift import DriftError, compare_patterns

    document = state.patterns.document()
    try:
        report = compare_patterns(
            getattr(state.info, "pattern_counts_train", None) or {}, state.patterns.counts(), document["modalities"]
        ).to_dict()
    except DriftError as error:
        report = {"error": str(error)}
    return {**document, "drift": report}


def _answer(result, parsed, model_id: str) -> JSONResponse:
    body = result.to_dict()
    patient_id = parsed.record.patient_id
    if body.get("patient_id") != patient_id:  # a cached explanation computed for a request with another id
        body["patient_id"] = patient_id
        for part in ("prediction", "what_if"):
            if isinstance(body.get(part), dict):
                body[part] = {**body[part], "patient_id": patient_id}
    body.setdefault("model_id", model_id)
    body.setdefault("input_hash", parsed.input_hash)
    body["input_notes"] = list(parsed.notes)
    return JSONResponse(body)


CLIENT_GONE = "the client went away"


async def _wait(future, job: Job, request: Request, deadline: float):
    """The job's result; its CancelToken is cancelled when the client disconnects (checked every 0.25 s) or
    the deadline passes, so the worker stops it at its next model pass (mmnar_core.cancel)."""
    waiter = asyncio.wrap_future(future)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                job.cancel.cancel("no answer within the request timeout")
                raise TimeoutError
            done, _ = await asyncio.wait({waiter}, timeout=min(0.25, remaining))
            if done:
                return waiter.result()
            if await request.is_disconnected():
                job.cancel.cancel(CLIENT_GONE)
                raise Cancelled(CLIENT_GONE)
    finally:
        if not future.done():
            future.cancel()  # dropped if still queued; a running one stops at its next check
        if not waiter.done():
            waiter.cancel()  # its late exception (Cancelled) is then not reported as never retrieved


async def _read_body(request: Request, limit: int, timeout_s: float = 30.0) -> bytes:
    """The body, or a 413 as soon as it is known to exceed `limit` (from Content-Length, else while reading),
    or a 408 when it has not arrived within `timeout_s` (a client sending a byte now and then)."""

    def too_large(size: str) -> RequestError:
        from mmnar_core.inputs.uploads import _size

        return RequestError.one(
            413,
            "request",
            f"the request body is {size}, larger than the limit of {_size(limit)}",
            f"a request of at most {_size(limit)} (see the per-file limits in docs/serving.md)",
        )

    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        from mmnar_core.inputs.uploads import _size

        raise too_large(_size(int(declared)))
    chunks, size = [], 0
    deadline = time.monotonic() + timeout_s
    stream = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), timeout=max(deadline - time.monotonic(), 0.001))
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise RequestError.one(
                408,
                "request",
                f"the request body did not arrive within {timeout_s:g} s ({size:,} bytes received)",
                "a body sent at once, within the body timeout",
            ) from None
        size += len(chunk)
        if size > limit:
            raise too_large(f"over {size:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _form_schema(kind: str, schema: Schema | None) -> dict:
    """The multipart fields, per modality once the model is loaded."""
    properties: dict[str, dict] = {
        "structured": {
            "type": "string",
            "description": 'JSON object {"feature": value} or {"feature": {"value": v, '
            '"unit": "u"}}; null = not measured',
            "example": '{"age": 71, "sex": "female", "temperature_max": "101.3 °F"}',
        },
        "structured_file": {
            "type": "string",
            "format": "binary",
            "description": "CSV (wide or long), JSON or FHIR R4 Bundle file; `structured` keys override it",
        },
        "patient_id": {"type": "string", "description": "identifier echoed in the answer (optional)"},
    }
    if schema is None:
        properties["<modality>"] = {
            "type": "string",
            "format": "binary",
            "description": "one image file per image modality, one text / .txt file per text "
            "modality (names in GET /info once the model is loaded)",
        }
    else:
        from mmnar_core.schema import ModalityKind

        for name in schema.names(ModalityKind.IMAGE):
            properties[name] = {"type": "string", "format": "binary", "description": f"{name}: PNG, JPEG or DICOM file"}
        for name in schema.names(ModalityKind.TEXT):
            properties[name] = {"type": "string", "description": f"{name}: the note as text, or a UTF-8 .txt file"}
    if kind == "explain":
        properties["task"] = {
            "type": "string",
            "description": f"the outcome to explain, or {ALL_TASKS!r} for every outcome in one run (default: the first)",
        }
        properties["modalities"] = {
            "type": "string",
            "description": "comma-separated modalities to attribute "
            "(default: every available one); prediction and what-if always cover all",
            "example": "structured,cxr",
        }
        if schema is not None:
            properties["task"]["enum"] = [*schema.tasks, ALL_TASKS]
    return {"type": "object", "properties": properties}


def run(bundle_dir, config: ServeConfig | None = None, image_weights=None, text_model=None) -> None:
    """Serve the bundle with uvicorn until interrupted (the model is loaded once, when the server starts)."""
    from mmnar_core.predictor import Predictor

    config = config or ServeConfig()

    def load():
        return Predictor.load(bundle_dir, device=config.device, image_weights=image_weights, text_model=text_model)

    serve_app(create_app(load, config), config)


def serve_app(app, config: ServeConfig) -> None:
    """Runs `app` with uvicorn and the connection limits of `config` until SIGINT / SIGTERM (exit status 0)."""
    import uvicorn

    from mmnar_core.serving.transport import hide_query_strings, uvicorn_settings
    from mmnar_core.terminate import exit_zero_on_sigterm

    exit_zero_on_sigterm()  # uvicorn re-raises the signal after its graceful shutdown: that ends with 0
    server_config = uvicorn.Config(
        app, host=config.host, port=config.port, log_level=config.log_level, workers=1, **uvicorn_settings(config)
    )
    hide_query_strings()  # after uvicorn configured its loggers
    uvicorn.Server(server_config).run()
