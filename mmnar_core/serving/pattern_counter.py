"""The model server's count of availability patterns among patients served (GET /pattern-counts), for the
ordering-policy drift check (mmnar_core.drift; docs/serving.md, "Ordering-policy drift").

Why in memory: the server has no database, and the drift check needs counts, not patients. It keeps one
number per pattern id, the time of the first and last count, and (in memory only, never written or
returned) the input hashes of the last `recent` requests, so that one patient's inputs sent several
times (the app's fast first answer, then the rest of its explanation; another outcome) count once.

With `--pattern-counts-file FILE` the counts survive a restart: read at start (refused when they belong to
another model or modality order), written atomically on a count that comes `flush_every_s` or more after
the last write, and at shutdown (no timer thread: a crash loses the counts since the last write). Thread-safe:
one lock around every read and change; the file is written outside the event loop by the caller.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path

from mmnar_core.drift import COUNTS_FORMAT, DriftError, counts_document, read_counts_document


class PatternCounter:
    """Per-pattern counts of one model; `bind` it to the model once it is loaded."""

    def __init__(self, path: str | Path | None = None, recent: int = 4096, flush_every_s: float = 10.0):
        self.path = Path(path) if path else None
        self.recent_limit = max(0, int(recent))
        self.flush_every_s = float(flush_every_s)
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._counts: dict[int, int] = {}
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._first: str | None = None
        self._last: str | None = None
        self._dirty = False
        self._written_at = 0.0
        self.model_id: str | None = None
        self.modalities: list[str] | None = None

    @staticmethod
    def check_file(path: str | Path) -> None:
        """A clear error now (at `serve` start) for a counts file that is not one; a missing file is fine
        (it is created) when its folder exists."""
        path = Path(path)
        if not path.parent.is_dir():
            raise FileNotFoundError(f"the folder of the pattern counts file {path} does not exist")
        if path.exists():
            _read(path)

    def bind(self, model_id: str, modalities: list[str]) -> None:
        """The model whose patterns are counted; reads the counts file when there is one (DriftError when
        it holds another model's counts: they are never overwritten)."""
        with self._lock:
            self.model_id, self.modalities = model_id, list(modalities)
            if self.path is None or not self.path.exists():
                return
            document = _read(self.path)
            counts = read_counts_document(
                document, self.modalities, model_id, where=f"the pattern counts file {self.path}"
            )
            if document.get("model_id") in (None, ""):
                raise DriftError(f"the pattern counts file {self.path} names no model: give another file")
            self._counts = counts
            self._first, self._last = document.get("first_seen"), document.get("last_seen")

    def add(self, pattern: int, input_hash: str | None = None) -> bool:
        """Counts one patient with `pattern` (once per input hash among the recent ones); True when the file
        is due to be written (`flush`)."""
        with self._lock:
            if input_hash and self.recent_limit:
                if input_hash in self._recent:
                    self._recent.move_to_end(input_hash)
                    return False
                self._recent[input_hash] = None
                while len(self._recent) > self.recent_limit:
                    self._recent.popitem(last=False)
            self._counts[int(pattern)] = self._counts.get(int(pattern), 0) + 1
            now = datetime.now(UTC).isoformat()
            self._first = self._first or now
            self._last = now
            self._dirty = True
            return self.path is not None and time.monotonic() - self._written_at >= self.flush_every_s

    def document(self) -> dict:
        """The counts as the file and GET /pattern-counts give them (mmnar_core.drift.counts_document)."""
        with self._lock:
            return counts_document(
                self.model_id or "",
                self.modalities or ["structured"],
                dict(self._counts),
                self._first,
                self._last,
                source="mmnar_core.serving",
            )

    def counts(self) -> dict[int, int]:
        with self._lock:
            return dict(self._counts)

    def flush(self) -> None:
        """Writes the counts file (atomically) when there is one and something changed."""
        if self.path is None or self.model_id is None or self.modalities is None:  # not bound yet
            return
        from mmnar_core.atomic_write import write_text_atomic

        with self._write_lock:  # one writer at a time; counting goes on meanwhile
            with self._lock:
                if not self._dirty:
                    return
                text = (
                    json.dumps(
                        counts_document(
                            self.model_id,
                            self.modalities,
                            dict(self._counts),
                            self._first,
                            self._last,
                            source="mmnar_core.serving",
                        ),
                        indent=2,
                    )
                    + "\n"
                )
                self._dirty = False
                self._written_at = time.monotonic()
            try:
                write_text_atomic(self.path, text)
            except OSError:
                with self._lock:
                    self._dirty = True  # written next time
                raise


def _read(path: Path) -> dict:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DriftError(
            f"the pattern counts file {path} cannot be read as JSON ({error}); give another file or "
            "move it away (it is never overwritten)"
        ) from None
    if not isinstance(document, dict) or document.get("format") != COUNTS_FORMAT:
        raise DriftError(
            f"{path} is not a pattern counts file (format {COUNTS_FORMAT!r}); give another file "
            "(it is never overwritten)"
        )
    return document
