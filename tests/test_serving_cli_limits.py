"""`serve` flags for the issue-18 limits: each reaches ServeConfig (and so the server), and a bad value stops
the command with exit status 2 and a message naming the flag, the value and what is accepted, before the
bundle is looked at or anything is started."""

from __future__ import annotations

import argparse

import pytest

from mmnar_core.cli import main
from mmnar_core.serving import command
from mmnar_core.serving.config import MB, ServeConfig


def parse(*flags: str):
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", "BUNDLE", *flags])


def test_every_limit_flag_reaches_the_server_config():
    config = command.config_from_args(
        parse(
            "--header-timeout",
            "3.5",
            "--body-timeout",
            "7",
            "--keep-alive",
            "2",
            "--max-connections",
            "40",
            "--max-inflight",
            "9",
            "--max-inflight-mb",
            "100",
            "--max-parsing",
            "3",
            "--max-queue-work",
            "900",
            "--max-structured-mb",
            "2",
            "--max-text-chars",
            "50000",
            "--explain-cache",
            "0",
        )
    )
    assert (config.header_timeout_s, config.body_timeout_s, config.keep_alive_s) == (3.5, 7.0, 2.0)
    assert (config.max_connections, config.max_inflight, config.inflight_limit) == (40, 9, 9)
    assert (config.max_inflight_bytes, config.max_parsing, config.max_queue_work) == (100 * MB, 3, 900.0)
    assert (config.max_structured_bytes, config.max_text_chars, config.explain_cache_size) == (2 * MB, 50_000, 0)
    assert command.config_from_args(parse()) == ServeConfig()  # no flags: every default, as documented


@pytest.mark.parametrize(
    "flag, value, accepted",
    [
        ("--header-timeout", "0", "a number > 0 of seconds"),
        ("--body-timeout", "-1", "a number > 0 of seconds"),
        ("--keep-alive", "soon", "a number > 0 of seconds"),
        ("--header-timeout", "nan", "a number > 0 of seconds"),
        ("--max-connections", "0", "a whole number >= 1"),
        ("--max-connections", "2.5", "a whole number >= 1"),
        ("--max-inflight", "-4", "a whole number >= 1"),
        ("--max-parsing", "0", "a whole number >= 1"),
        ("--max-queue-work", "inf", "a number > 0 of units of work"),
        ("--max-inflight-mb", "0", "a number > 0 of MB"),
        ("--max-structured-mb", "x", "a number > 0 of MB"),
        ("--max-text-chars", "0", "a whole number >= 1"),
        ("--explain-cache", "-1", "a whole number >= 0"),
    ],
)
def test_a_bad_limit_is_refused_naming_the_flag_and_what_is_accepted(tmp_path, capsys, flag, value, accepted):
    with pytest.raises(SystemExit) as stopped:
        main(["serve", str(tmp_path), flag, value])
    assert stopped.value.code == 2
    assert f"argument {flag}: expected {accepted}, got {value!r}" in capsys.readouterr().err


def test_limits_that_contradict_each_other_are_refused_before_the_bundle_is_read(tmp_path, capsys):
    assert main(["serve", str(tmp_path), "--max-request-mb", "48", "--max-inflight-mb", "10"]) == 2
    err = capsys.readouterr().err
    assert "max_inflight_bytes (10,485,760) must be at least max_request_bytes (50,331,648)" in err
    assert "not a model bundle" not in err  # refused before the path was looked at
