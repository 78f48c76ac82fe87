"""Errors for one patient's user-supplied inputs. Each names the field, file, row or FHIR resource
(`field`), what is wrong (`problem`) and what is accepted (`accepted`), so the app can show the
message as is and a server can return it as JSON (`to_dict`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# What kind of problem an error is, decided where it is raised (the content is known there), so a server
# can answer with an HTTP status without looking at the bytes again: over a byte or character limit of the
# upload; a file of a kind the field does not accept; anything else (the right kind, invalid content).
KINDS = ("invalid", "too_large", "wrong_type")


class InputError(ValueError):
    """One problem with one input. `feature` is the model feature concerned, if any (lets a form mark
    the field); `kind` is one of KINDS; `str(e) == f"{field}: {problem}. Accepted: {accepted}"`."""

    def __init__(
        self,
        field: str,
        problem: str,
        accepted: str,
        feature: str | None = None,
        kind: str = "invalid",
        unit_example: str | None = None,
    ):
        if kind not in KINDS:
            raise ValueError(f"InputError kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.field = str(field)
        # a number that fits the feature in another unit: `unit_example` is it written with that unit
        # ("101.3 °F"), and the problem ends with `unit_advice` (a form with a unit list words it its own way)
        self.unit_example = unit_example
        self.problem = str(problem).rstrip(". ") + self.unit_advice
        self.accepted = str(accepted).rstrip(". ")
        self.feature = feature
        self.kind = kind
        super().__init__(f"{self.field}: {self.problem}. Accepted: {self.accepted}")

    @property
    def unit_advice(self) -> str:
        """The end of `problem` that advises writing the unit after the number ('' without `unit_example`)."""
        return f", or write the unit after the number (e.g. '{self.unit_example}')" if self.unit_example else ""

    @property
    def errors(self) -> list[InputError]:
        """[self], so callers can handle InputError and InputErrors alike."""
        return [self]

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "problem": self.problem,
            "accepted": self.accepted,
            "feature": self.feature,
            "message": str(self),
        }


class InputErrors(ValueError):
    """Several problems found at once (every bad field of a form, every bad row of a file).

    `partial` holds what was valid (a StructuredInput with the bad features set to None) when the
    parser got that far, so an app can keep the good values and ask only for the bad ones."""

    def __init__(self, errors: Iterable[InputError], partial: Any = None):
        self.errors: list[InputError] = list(errors)
        if not self.errors:
            raise ValueError("InputErrors needs at least one InputError")
        self.partial = partial
        super().__init__(self._message())

    def _message(self) -> str:
        if len(self.errors) == 1:
            return str(self.errors[0])
        return f"{len(self.errors)} problems:\n" + "\n".join(f"- {e}" for e in self.errors)

    @property
    def fields(self) -> list[str]:
        return [e.field for e in self.errors]

    def to_dict(self) -> dict[str, Any]:
        return {"errors": [e.to_dict() for e in self.errors]}


class ErrorCollector:
    """Gathers InputErrors while parsing so one pass reports every problem."""

    def __init__(self) -> None:
        self.errors: list[InputError] = []

    def add(self, field: str, problem: str, accepted: str, feature: str | None = None) -> None:
        self.errors.append(InputError(field, problem, accepted, feature))

    def extend(self, errors: Iterable[InputError]) -> None:
        self.errors.extend(errors)

    def __bool__(self) -> bool:
        return bool(self.errors)

    def raise_if_any(self, partial: Any = None) -> None:
        if self.errors:
            raise InputErrors(self.errors, partial)
