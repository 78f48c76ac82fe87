"""argparse types shared by the commands: numbers with an error that names what is accepted."""

from __future__ import annotations

import argparse


def positive(kind, unit: str = ""):
    """An argparse type: a number > 0 of `kind` (int or float), with an error naming what is accepted."""
    what = ("a whole number >= 1" if kind is int else "a number > 0") + (f" of {unit}" if unit else "")

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value
