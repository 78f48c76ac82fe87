"""PHI-safe logging for the clinician app.

`configure_logging()` (called by every page through `page_header`, and by the accounts command) installs,
once per process:

- a log-record factory that redacts EVERY record when it is created, whichever logger made it (the app's,
  Streamlit's, SQLAlchemy's, a library's) and whichever handlers later write it: message, arguments,
  exception traceback and stack;
- the same redaction as a filter on the handlers present (belt and braces if another library replaces the
  record factory later);
- quiet SQL logging: ``sqlalchemy.engine`` and ``sqlalchemy.pool`` at WARNING, and statement parameters
  (which hold labels, notes and inputs) are dropped from SQLAlchemy's records even at DEBUG.

What redaction replaces (`redact_text`):

- values the app registered as sensitive while handling a patient (`register_sensitive`): the assessment
  label, the note texts (whole, each line and each sentence), the save note, upload file names and the
  identifiers found in an uploaded FHIR Bundle (Patient ids, identifiers, names, phone numbers, e-mail
  addresses, birth dates), matched case-insensitively;
- patterns: e-mail addresses, phone numbers, medical-record-number-like values (``MRN 123``, any run of
  6+ digits), ``[parameters: ...]`` blocks of database errors, bytes literals and ``\\xNN`` runs, and long
  base64 runs (image data, tokens).

Each replaced value becomes ``[redacted h:<10 hex>]``, an HMAC-SHA256 of the value under a per-deployment
salt (`phi_hash`), so the same patient or value can be correlated across log lines without being readable.
The salt comes from ``MMNAR_LOG_SALT``, else ``[mmnar] log_salt`` in Streamlit's secrets, else a random
salt created once in the data folder (``<MMNAR_DATA_DIR>/log_salt``, mode 0600).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import sys
import threading
import traceback
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

LOGGER_NAME = "mmnar_app"
_REGISTRY_MAX = 5000
_MIN_VALUE_LEN = 4
_MIN_SENTENCE_LEN = 12
_MAX_PIECES_PER_TEXT = 400

_lock = threading.RLock()
_registry: OrderedDict[str, None] = OrderedDict()  # lower-cased sensitive values, newest last
_salt: bytes | None = None
_installed = False
_previous_factory = None


def get_logger(name: str = LOGGER_NAME) -> logging.Logger:
    return logging.getLogger(name)


# ----------------------------------------------------------------------------- salt and hash
def _data_dir() -> Path:
    return Path(os.environ.get("MMNAR_DATA_DIR") or Path.home() / ".local" / "share" / "mmnar").expanduser()


def _secrets_salt() -> str | None:
    try:
        import streamlit as st

        if not st.secrets.load_if_toml_exists():
            return None
        section = st.secrets.get("mmnar")
        value = section.get("log_salt") if section is not None else None
        return str(value) if value else None
    except Exception:  # no Streamlit, no secrets, or secrets unreadable: fall through
        return None


def _file_salt() -> bytes | None:
    path = _data_dir() / "log_salt"
    try:
        if path.is_file():
            value = path.read_text().strip()
            if value:
                return value.encode()
        path.parent.mkdir(parents=True, exist_ok=True)
        value = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
        return value.encode()
    except FileExistsError:  # another process created it just now
        return path.read_text().strip().encode() or None
    except OSError:
        return None


def salt() -> bytes:
    global _salt
    with _lock:
        if _salt is None:
            env = os.environ.get("MMNAR_LOG_SALT", "").strip()
            value = env.encode() if env else None
            if value is None:
                from_secrets = _secrets_salt()
                value = from_secrets.encode() if from_secrets else None
            _salt = value or _file_salt() or secrets.token_bytes(32)  # last resort: per process
        return _salt


def phi_hash(value: Any) -> str:
    """``h:`` + 10 hex digits of HMAC-SHA256(salt, value lower-cased): stable within a deployment."""
    text = str(value).strip().lower()
    return "h:" + hmac.new(salt(), text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:10]


def _mark(value: str) -> str:
    return f"[redacted {phi_hash(value)}]"


# ----------------------------------------------------------------------------- registry
_SENTENCE = re.compile(r"[^.!?;\n\r]+")


def _pieces(value: str, whole_words: bool) -> Iterable[str]:
    value = value.strip()
    if len(value) >= _MIN_VALUE_LEN:
        yield value
    if len(value) > _MIN_SENTENCE_LEN:
        count = 0
        for line in value.splitlines():
            for piece in (line, *_SENTENCE.findall(line)):
                piece = piece.strip()
                if len(piece) >= _MIN_SENTENCE_LEN and piece != value:
                    yield piece
                    count += 1
            if count > _MAX_PIECES_PER_TEXT:
                break
    if whole_words:
        for word in re.findall(r"[\w'’-]+", value):
            if len(word) >= _MIN_VALUE_LEN and (any(c.isupper() for c in word) or any(c.isdigit() for c in word)):
                yield word


def register_sensitive(*values: Any, words: bool = False) -> None:
    """Remember values that must never appear in a log line (labels, notes, names, identifiers...).

    Long texts are also registered line by line and sentence by sentence; `words=True` also registers each
    capitalised or numeric word of 4+ characters (for names and labels)."""
    with _lock:
        for value in values:
            if value is None or isinstance(value, (bool, int, float)):
                continue
            if isinstance(value, (bytes, bytearray)):
                continue  # bytes are caught by the bytes/base64 patterns
            for piece in _pieces(str(value), words):
                key = piece.lower()
                _registry.pop(key, None)
                _registry[key] = None
        while len(_registry) > _REGISTRY_MAX:
            _registry.popitem(last=False)


def register_fhir_identifiers(data: bytes | str) -> list[str]:
    """Names, ids, identifiers, phone numbers, e-mails and birth dates of the Patient resources (and the
    full URLs of all entries) of an uploaded FHIR Bundle, so that they never reach a log line (the uploader's own
    screen shows them as they are)."""
    import json

    try:
        bundle = json.loads(data)
    except (ValueError, TypeError, RecursionError):
        return []
    if not isinstance(bundle, dict):
        return []
    found: list[str] = []

    def walk_patient(resource: dict) -> None:
        for key in ("id", "birthDate"):
            if isinstance(resource.get(key), str):
                found.append(resource[key])
        for name in resource.get("name") or []:
            if isinstance(name, dict):
                for part in [
                    name.get("text"),
                    name.get("family"),
                    *(name.get("given") or []),
                    *(name.get("prefix") or []),
                ]:
                    if isinstance(part, str):
                        found.append(part)
                if isinstance(name.get("family"), str) and name.get("given"):
                    given = " ".join(g for g in name["given"] if isinstance(g, str))
                    found.append(f"{given} {name['family']}")
        for item in (resource.get("identifier") or []) + (resource.get("telecom") or []):
            if isinstance(item, dict) and isinstance(item.get("value"), str):
                found.append(item["value"])
        for address in resource.get("address") or []:
            if isinstance(address, dict):
                found.extend(v for v in [address.get("text"), *(address.get("line") or [])] if isinstance(v, str))

    entries = bundle.get("entry") if isinstance(bundle.get("entry"), list) else []
    if bundle.get("resourceType") == "Patient":
        walk_patient(bundle)
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("fullUrl"), str):
            found.append(entry["fullUrl"])
        resource = entry.get("resource")
        if isinstance(resource, dict) and resource.get("resourceType") == "Patient":
            walk_patient(resource)
            if isinstance(resource.get("id"), str):
                found.append(f"Patient/{resource['id']}")
    found = [f for f in dict.fromkeys(x.strip() for x in found) if f]
    register_sensitive(*found, words=True)
    return found


# ----------------------------------------------------------------------------- text redaction
_PARAMETERS = re.compile(r"\[parameters: .*?\](?=\s*(?:\n|\(Background|$))", re.DOTALL)
_BYTES_LITERAL = re.compile(r"""\bb(['"])(?:\\.|(?!\1)[^\\\n]){12,}?\1""")
_HEX_ESCAPES = re.compile(r"(?:\\x[0-9a-fA-F]{2}){6,}")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{64,}={0,2}")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_MRN = re.compile(
    r"\b(?:MRN|medical record (?:number|no\.?)|patient (?:id|number)|NHS (?:number|no\.?)|SSN|"
    r"hospital (?:number|no\.?))\s*[:#=]?\s*([A-Za-z0-9][\w/-]*)",
    re.IGNORECASE,
)
_PHONE = re.compile(r"(?<![\w.:/])\+?\(?\d[\d\s().-]{7,}\d(?![\w:/])")
_DIGITS = re.compile(r"(?<![\w.:/-])\d{6,}(?![\w:/-]|\.\d)")
_DATE_LIKE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}")


def _phone(match: re.Match) -> str:
    text = match.group(0)
    digits = sum(c.isdigit() for c in text)
    if not 9 <= digits <= 15 or _DATE_LIKE.search(text) or re.fullmatch(r"[\d.]+", text) or "  " in text:
        return text
    return _mark(re.sub(r"\D", "", text))


def _base64(match: re.Match) -> str:
    text = match.group(0)
    if re.fullmatch(r"[0-9a-fA-F]{1,64}", text):  # a sha256 / input hash: not personal data, keep it
        return text
    upper, lower = sum(c.isupper() for c in text), sum(c.islower() for c in text)
    if upper < 6 or lower < 6 or sum(c.isdigit() for c in text) < 2:  # a long path or name, not encoded data
        return text
    return "[data redacted]"


def _registry_redact(text: str) -> str:
    with _lock:
        values = list(_registry)
    if not values:
        return text
    lowered = text.lower()
    hits = [v for v in values if v in lowered]
    if not hits:
        return text
    for value in sorted(hits, key=len, reverse=True):
        text = re.sub(re.escape(value), lambda m: _mark(m.group(0)), text, flags=re.IGNORECASE)
    return text


def redact_text(text: Any) -> str:
    """`text` with every registered sensitive value and every identifier-like pattern replaced."""
    if not isinstance(text, str):
        text = str(text)
    if not text:
        return text
    text = _PARAMETERS.sub("[parameters: redacted]", text)
    text = _registry_redact(text)
    text = _BYTES_LITERAL.sub("[bytes redacted]", text)
    text = _HEX_ESCAPES.sub("[bytes redacted]", text)
    text = _BASE64.sub(_base64, text)
    text = _EMAIL.sub(lambda m: _mark(m.group(0)), text)
    text = _MRN.sub(lambda m: m.group(0)[: m.start(1) - m.start(0)] + _mark(m.group(1)), text)
    text = _PHONE.sub(_phone, text)
    text = _DIGITS.sub(lambda m: _mark(m.group(0)), text)
    return text


def safe_error(error: BaseException) -> str:
    """A message about `error` fit for a user or a log line: type and redacted message, without SQL
    parameters, notes or identifiers."""
    message = str(error)
    sql = message.find("\n[SQL:")
    if sql >= 0:
        message = message[:sql]
    message = redact_text(message.strip())
    if len(message) > 300:
        message = message[:300] + "..."
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


# ----------------------------------------------------------------------------- records
class _Redacted:
    """A log argument replaced by its redacted str() and repr() (keeps %s and %r working)."""

    __slots__ = ("_str", "_repr")

    def __init__(self, value: Any):
        try:
            self._str = redact_text(str(value))
        except Exception:
            self._str = "[unprintable]"
        try:
            self._repr = redact_text(repr(value))
        except Exception:
            self._repr = "[unprintable]"

    def __str__(self) -> str:
        return self._str

    def __repr__(self) -> str:
        return self._repr

    def __format__(self, spec: str) -> str:
        return format(self._str, spec)


def _safe_arg(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _Redacted(value)


class _Literal:
    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


_HIDDEN = _Literal("[parameters redacted]")
_SQLA_PARAMS = re.compile(r"^\[[^\]]*\] %r$")


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact `record` in place (idempotent)."""
    if getattr(record, "_mmnar_redacted", False):
        return record
    record._mmnar_redacted = True  # type: ignore[attr-defined]
    try:
        if (
            record.name.startswith("sqlalchemy.engine")
            and isinstance(record.msg, str)
            and record.args
            and (_SQLA_PARAMS.match(record.msg) or "%r" in record.msg)
        ):
            # "[generated in 0.0001s] %r" with the statement's parameters: labels, notes, inputs
            record.args = (
                tuple(_HIDDEN if i == len(record.args) - 1 else _safe_arg(a) for i, a in enumerate(record.args))
                if isinstance(record.args, tuple)
                else None
            )
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        elif record.msg is not None:
            record.msg = redact_text(str(record.msg))
        if isinstance(record.args, tuple):
            record.args = tuple(_safe_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _safe_arg(v) for k, v in record.args.items()}
        try:
            message = record.getMessage()
        except Exception:
            message = None
        if message is not None:
            cleaned = redact_text(message)
            if cleaned != message:  # a value split between the template and an argument
                record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact_text("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
    except Exception:  # never let redaction break logging, never let an unredacted record through
        record.msg, record.args, record.exc_info, record.exc_text = "[log record redacted]", None, None, None
    return record


class RedactingFilter(logging.Filter):
    """Handler/logger filter: redacts the record (never drops it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def _factory(*args, **kwargs) -> logging.LogRecord:
    return redact_record(_previous_factory(*args, **kwargs))


_FILTER = RedactingFilter()


def _filter_handlers() -> None:
    loggers = [logging.getLogger()] + [
        logger for logger in list(logging.Logger.manager.loggerDict.values()) if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in list(logger.handlers):
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (it may be replaced, e.g. by a test runner)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging() -> None:
    """Install the redaction (once per process; later calls only add the filter to new handlers)."""
    global _installed, _previous_factory
    with _lock:
        if not _installed:
            _previous_factory = logging.getLogRecordFactory()
            logging.setLogRecordFactory(_factory)
            for name in ("sqlalchemy.engine", "sqlalchemy.pool"):
                logging.getLogger(name).setLevel(logging.WARNING)
            app_logger = logging.getLogger(LOGGER_NAME)
            level = os.environ.get("MMNAR_LOG_LEVEL", "INFO").upper()
            app_logger.setLevel(level if level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") else "INFO")
            root = logging.getLogger()
            if not root.handlers:  # `streamlit run` leaves the root logger bare: the app's lines go to stderr
                handler = _StderrHandler()
                handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
                root.addHandler(handler)
            _installed = True
        _filter_handlers()
