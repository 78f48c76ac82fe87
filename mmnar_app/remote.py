"""`RemoteService`: the app's model service backed by a model server (`python -m mmnar_core serve`), with
the interface of `LocalService`: `.info` (ModelInfo from GET /info) and `.analyse(record, task, progress)`
-> Explanation (POST /explain with the record's inputs). The app uses it when MMNAR_INFERENCE_URL is set.

Inputs go as the server expects them (docs/serving.md): the structured values as one JSON field, each
image as its original file bytes, each note as a UTF-8 .txt file (so its bytes arrive unchanged). The
server validates and computes exactly as the in-process predictor does, so the numbers are the same.
Explanations are cached by cache_key, as LocalService caches them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from mmnar_app.service import AnalysisRefused, CachedExplanations
from mmnar_core.cancel import CancelToken
from mmnar_core.explain.attributions import _plain_value
from mmnar_core.explain.explanation import Explanation
from mmnar_core.model_info import ModelInfo
from mmnar_core.schema import PatientRecord

TOKEN_ENV = "MMNAR_INFERENCE_TOKEN"  # the bearer token sent to a server that requires one (docs/serving.md)
DEFAULT_TIMEOUT_S = 300.0  # an explanation with two notes takes seconds; a queue ahead of it adds more
_IMAGE_TYPES = {"png": ("png", "image/png"), "jpeg": ("jpg", "image/jpeg"), "dicom": ("dcm", "application/dicom")}


class RemoteServiceError(RuntimeError):
    """The model server is unreachable or refused a request. `status` is the HTTP status (None when
    unreachable), `errors` the server's error objects ({"field", "problem", "accepted", "message", ...})."""

    def __init__(self, message: str, url: str, status: int | None = None, errors: list[dict] | None = None):
        self.url = url
        self.status = status
        self.errors = list(errors or [])
        super().__init__(message)


class RemoteService(CachedExplanations):
    """The model server at `url` as an app service (thread-safe: one per process, many sessions)."""

    def __init__(
        self,
        url: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        cache_size: int = 64,
        retries: int = 2,
        transport=None,
        token: str | None = None,
    ):
        """`token`: the bearer token for a server with authentication; None reads MMNAR_INFERENCE_TOKEN."""
        import httpx

        if not url or not str(url).startswith(("http://", "https://")):
            raise RemoteServiceError(
                f"MMNAR_INFERENCE_URL {url!r} is not an http(s) URL; accepted: e.g. http://127.0.0.1:8765", str(url)
            )
        self.url = str(url).rstrip("/")
        self.retries = int(retries)
        token = (os.environ.get(TOKEN_ENV) if token is None else token) or ""
        headers = {"Authorization": f"Bearer {token.strip()}"} if token.strip() else {}
        self._client = httpx.Client(
            base_url=self.url, timeout=httpx.Timeout(timeout, connect=10.0), transport=transport, headers=headers
        )
        super().__init__(cache_size)
        self.info: ModelInfo = ModelInfo.from_dict(self._request("GET", "/info"))

    # ---------------------------------------------------------------- the service interface
    def analyse(
        self,
        record: PatientRecord,
        task: str,
        progress: Callable[[str], None] | None = None,
        modalities: list[str] | None = None,
    ) -> Explanation:
        """Prediction, what-if and attributions for one outcome, computed by the server (at most once here).
        With `modalities`, only those are attributed (a fast first answer; `complete` adds the rest), unless
        the complete explanation is already here."""
        from mmnar_core.explain.explanation import input_hash

        explanation, key = self._cached(input_hash(record), task, modalities)
        if explanation is None:
            if progress is not None:
                progress("encode")  # the server runs every step; this is the one a client can see start
            explanation = self._explain(record, task, modalities)
            self._cache.put(key, explanation)
        return explanation

    def complete(
        self,
        partial: Explanation,
        record: PatientRecord,
        task: str,
        progress: Callable[[str], None] | None = None,
        cancel: CancelToken | None = None,
    ) -> Explanation:
        """The complete explanation from a partial one: the server attributes the modalities it lacks. A
        `cancel` already set stops it before the request (one under way runs to the server's own budget)."""
        key = self.cache_key(partial.input_hash, task)
        explanation = self._cache.get(key)
        if explanation is None:
            if cancel is not None and cancel.cancelled:
                raise AnalysisRefused(f"the analysis was stopped ({cancel.reason})")
            pending = partial.pending()
            if progress is not None and pending:
                progress(pending[0])
            explanation = partial.completed_with(self._explain(record, task, pending), key, self.info.modality_names())
            self._cache.put(key, explanation)
        return explanation

    def _explain(self, record: PatientRecord, task: str, modalities: list[str] | None) -> Explanation:
        data, files = request_parts(record)
        data["task"] = task
        if modalities is not None:
            data["modalities"] = ",".join(modalities)
        return Explanation.from_dict(self._request("POST", "/explain", **_multipart(data, files)))

    # ---------------------------------------------------------------- more of the API
    def predict(self, record: PatientRecord) -> dict:
        """POST /predict: Prediction.to_dict() plus input_hash and input_notes."""
        data, files = request_parts(record)
        return self._request("POST", "/predict", **_multipart(data, files))

    def what_if(self, record: PatientRecord) -> dict:
        """POST /what-if: WhatIfResult.to_dict() plus model_id, input_hash and input_notes."""
        data, files = request_parts(record)
        return self._request("POST", "/what-if", **_multipart(data, files))

    def stats(self) -> dict:
        return self._request("GET", "/stats")

    def close(self) -> None:
        self._client.close()

    # ---------------------------------------------------------------- HTTP
    def _request(self, method: str, path: str, **kwargs) -> dict:
        import httpx

        where = f"{method} {self.url}{path}"
        for attempt in range(self.retries + 1):
            try:
                response = self._client.request(method, path, **kwargs)
            except httpx.TimeoutException as error:
                raise RemoteServiceError(
                    f"the model server at {self.url} did not answer {method} {path} in time "
                    f"({type(error).__name__}); it may be overloaded",
                    self.url,
                ) from None
            except httpx.HTTPError as error:
                raise RemoteServiceError(
                    f"cannot reach the model server at {self.url} ({type(error).__name__}: "
                    f"{error}); check that `python -m mmnar_core serve` runs there and that "
                    "MMNAR_INFERENCE_URL is right",
                    self.url,
                ) from None
            if response.status_code == 503 and "retry-after" in response.headers and attempt < self.retries:
                time.sleep(min(10.0, _seconds(response.headers["retry-after"])))
                continue
            break
        if response.status_code >= 400:
            errors = _errors(response)
            messages = "; ".join(e.get("message") or e.get("problem", "") for e in errors) or response.text[:500]
            if response.status_code == 401:
                messages += (
                    f" (set {TOKEN_ENV} to a token this server accepts)"
                    if "authorization" not in {k.lower() for k in self._client.headers}
                    else f" (the token in {TOKEN_ENV} was refused: unknown, revoked or expired)"
                )
            elif response.status_code == 403:
                messages += f" (the token in {TOKEN_ENV} has a role that may not do this)"
            raise RemoteServiceError(
                f"the model server at {self.url} answered {response.status_code} to {where}: {messages}",
                self.url,
                response.status_code,
                errors,
            )
        try:
            return response.json()
        except ValueError:
            raise RemoteServiceError(
                f"the model server at {self.url} answered {where} with something that is not "
                f"JSON ({response.headers.get('content-type')}); is this URL a model server?",
                self.url,
                response.status_code,
            ) from None


def request_parts(record: PatientRecord) -> tuple[dict, list]:
    """A record's inputs as multipart fields (data, files) for httpx: the inputs the server re-validates."""
    from mmnar_core.encoders.image_io import sniff_format

    data = {
        "patient_id": str(record.patient_id) or "unnamed patient",
        "structured": json.dumps(
            {k: _plain_value(v) for k, v in record.structured.items()}, allow_nan=False, ensure_ascii=False
        ),
    }
    files = []
    for name, source in record.images.items():
        if source is None:
            continue
        raw = _bytes(source)
        suffix, media_type = _IMAGE_TYPES.get(sniff_format(raw) or "", ("bin", "application/octet-stream"))
        filename = Path(source).name if isinstance(source, (str, Path)) else f"{name}.{suffix}"
        files.append((name, (filename, raw, media_type)))
    for name, text in record.texts.items():
        if text is None or not str(text).strip():
            continue
        raw = text if isinstance(text, bytes) else str(text).encode("utf-8")
        files.append((name, (f"{name}.txt", raw, "text/plain; charset=utf-8")))
    return data, files


def _multipart(data: dict, files: list) -> dict:
    """httpx keyword arguments for a multipart body. httpx sends `data` alone as urlencoded, which the server
    refuses (415), so a record without an image or a note sends its fields as multipart parts."""
    if files:
        return {"data": data, "files": files}
    return {"files": [(name, (None, value)) for name, value in data.items()]}


def _bytes(source) -> bytes:
    """An image of a PatientRecord (bytes or a path) as the bytes to upload; the server validates them."""
    return bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).read_bytes()


def _seconds(value: str) -> float:
    try:
        return max(0.0, float(value))
    except ValueError:
        return 1.0


def _errors(response) -> list[dict]:
    try:
        body = response.json()
    except ValueError:
        return []
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        return [e for e in body["errors"] if isinstance(e, dict)]
    if isinstance(body, dict) and "detail" in body:  # FastAPI's own errors (404, 405)
        return [{"problem": str(body["detail"]), "message": str(body["detail"])}]
    return []
