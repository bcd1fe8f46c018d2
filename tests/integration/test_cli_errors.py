"""Every verb, given bad input, answers with one line on stderr and a DESIGN §6 exit status:
never a traceback, never an "internal error".

The leaves (``invoice``, ``api-key create``, ...) are read from the CLI's own parser, so a
verb added later is covered without editing this file: each required argument gets a junk
value of its kind, and the leaf runs against an unreachable server, an invalid URL, and a
real but empty database.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from billing_oss.server.cli import build_parser, main

CLI = [sys.executable, "-m", "billing_oss"]
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"
NOT_STARTED_BY_THIS_TEST = {"serve"}  # its start-up errors: test_cli_serve.py


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI run in this process points the root logger at this test's captured stderr;
    later tests must not inherit a handler on a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def leaves(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
           ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        yield prefix, parser
        return
    for name, child in subparsers[0].choices.items():
        yield from leaves(child, (*prefix, name))


def junk_arguments(parser: argparse.ArgumentParser) -> list[str]:
    """A value of the right shape, but meaning nothing, for each required argument."""
    out: list[str] = []
    for action in parser._actions:
        positional = not action.option_strings
        if isinstance(action, argparse._HelpAction) or not (action.required or positional):
            continue
        if positional and action.nargs in ("?", "*"):
            continue
        if action.choices:
            value = str(next(iter(action.choices)))
        elif action.type is int:
            value = "987654"
        elif callable(action.type) and action.type is not str:
            value = _shaped(action.type)
        elif action.dest in ("start", "end"):
            value = "yesterday"
        else:
            value = "/nonexistent/junk"
        out += ([] if positional else [action.option_strings[-1]]) + [value]
    return out


def _shaped(parse: Any) -> str:
    """The first of a few everyday shapes (a number, a date, a month, an amount) that a typed
    argument's parser takes, so the error that follows is not argparse's own."""
    for candidate in ("987654", "2026-01-31", "2026-01", "1.00", "/nonexistent/junk"):
        try:
            parse(candidate)
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            continue
        return candidate
    return "/nonexistent/junk"


def accepts(parser: argparse.ArgumentParser, option: str) -> bool:
    return any(option in a.option_strings for a in parser._actions)


LEAVES = [(words, leaf) for words, leaf in leaves(build_parser())
          if words[0] not in NOT_STARTED_BY_THIS_TEST]


def run(args: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """The CLI as a process: what a user sees, tracebacks included."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_OSS_")}
    env["BILLING_OSS_CATALOG_LOAD_DEMO"] = "false"
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def run_here(args: list[str], capsys: pytest.CaptureFixture[str]
             ) -> subprocess.CompletedProcess[str]:
    """The CLI in this process (a process each would take minutes on a busy machine): an
    exception escaping ``main`` is what would have printed a traceback, and fails here."""
    capsys.readouterr()
    try:
        status = main(args)
    except SystemExit as exc:  # argparse's own usage errors: one line, status 2
        status = int(exc.code or 0)
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, status, captured.out, captured.err)


def assert_one_clean_line(out: subprocess.CompletedProcess[str], args: list[str],
                          statuses: tuple[int, ...] = (1, 2, 3)) -> None:
    shown = " ".join(args)
    assert "Traceback" not in out.stderr, f"{shown}:\n{out.stderr}"
    assert "internal error" not in out.stderr, f"{shown}: {out.stderr}"
    assert out.returncode in statuses, f"{shown}: exit {out.returncode}\n{out.stderr}"
    assert out.stderr.strip(), f"{shown}: failed without saying why"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("BILLING_OSS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_the_parser_yields_every_leaf() -> None:
    names = {" ".join(words) for words, _ in LEAVES}
    assert {"invoice", "api-key create", "bill-run", "catalog load", "ingest",
            "decode"} <= names


def test_every_verb_with_bad_input_against_a_real_database(
        database_url: str, clean_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    for words, leaf in LEAVES:
        args = [*words, *junk_arguments(leaf)]
        if accepts(leaf, "--database-url"):
            args += ["--database-url", database_url]
        out = run_here(args, capsys)
        if out.returncode == 0:  # junk that happens to be valid (a list that is empty)
            continue
        assert_one_clean_line(out, args)


@pytest.mark.parametrize("url", [
    UNREACHABLE, "mysql://root@127.0.0.1/billing", "127.0.0.1:5432/billing",
    "postgresql://127.0.0.1/billing?sslmode=sometimes", "postgres://", "postgresql://h:99999/x",
    "postgresql://127.0.0.1:5432",
])
def test_every_database_verb_refuses_a_bad_url(url: str, clean_env: None,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    for words, leaf in LEAVES:
        if not accepts(leaf, "--database-url"):
            continue
        args = [*words, *junk_arguments(leaf), "--database-url", url]
        out = run_here(args, capsys)
        assert_one_clean_line(out, args, statuses=(1, 2))
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    # nothing else in the way: the URL itself is the error, status 2
    out = run_here(["files", "list", "--database-url", url], capsys)
    assert out.returncode == 2, out.stderr
    assert ("invalid database URL" in out.stderr) != (url == UNREACHABLE), out.stderr
    assert not Path("var").exists()  # no embedded server started instead


def test_bill_run_checks_the_period_before_the_database(
        clean_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_here(["bill-run", "--period", "2026-13"], capsys)  # no URL: would start one
    assert out.returncode == 2
    assert "--period must be YYYY-MM" in out.stderr
    assert not Path("var").exists()


def test_invoice_pdf_into_a_missing_folder(clean_env: None,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = run_here(["invoice", "pdf", "1", "-o", "no/such/x.pdf"], capsys)
    assert out.returncode == 2 and "no directory no/such" in out.stderr, out.stderr
    assert not Path("var").exists()


def test_catalog_load_reports_every_problem(tmp_path: Path, clean_env: None,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    catalog = json.loads((Path(__file__).parents[2] / "config" / "demo-catalog.json")
                         .read_text())
    catalog["tariffs"][0]["versions"][0]["effective_from"] = "soon"
    catalog["tariffs"][1]["versions"][0]["rates"][0]["zone"] = "atlantis"
    catalog["products"][0]["recurring_fee"] = 12  # a number, not a decimal string
    catalog["accounts"][1]["tariff"] = "nothing"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(catalog))
    out = run_here(["catalog", "load", str(path), "--database-url", UNREACHABLE], capsys)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert any("tariffs[0].versions[0].effective_from" in ln for ln in lines), out.stderr
    assert any("tariffs[1].versions[0].rates[0].zone" in ln for ln in lines), out.stderr
    assert any("products[0].recurring_fee" in ln for ln in lines), out.stderr
    assert any("accounts[1].tariff" in ln for ln in lines), out.stderr
    # accounts of the broken tariff retail (A1, B1 use others) are not reported again
    assert not any("accounts[0].tariff" in ln for ln in lines), out.stderr
    assert lines[-1].endswith("4 problems; nothing stored"), out.stderr
    assert "cannot connect" not in out.stderr  # checked before the database


def test_decode_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    lines = "".join(f'"a","{i}","33612345678","x","","c","","Dial","","2026-03-02 10:00:00",'
                    f'"2026-03-02 10:00:01","2026-03-02 10:01:00","60","59","ANSWERED",'
                    f'"DOCUMENTATION","{i}.1",""\n' for i in range(20000))
    path.write_text(lines)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_OSS_")}
    out = subprocess.run(
        f"{sys.executable} -m billing_oss decode --format csv {path} | head -1",
        shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
        check=False)
    assert out.stdout.count("\n") == 1
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr


def test_an_invoice_by_a_number_that_does_not_exist(
        database_url: str, clean_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_here(["invoice", "show", "INV-000009", "--database-url", database_url], capsys)
    assert out.returncode == 1 and "no invoice numbered INV-000009" in out.stderr, out.stderr
    out = run_here(["invoice", "xml", "INV-x", "--database-url", database_url], capsys)
    assert out.returncode == 1 and "give its id (4) or its number" in out.stderr, out.stderr
    out = run_here(["credit-note", "show", "CN-000001", "--database-url", database_url],
                   capsys)
    assert out.returncode == 1 and "no credit note numbered CN-000001" in out.stderr
    out = run_here(["invoice", "list", "--database-url", database_url], capsys)
    assert out.returncode == 0 and out.stdout.strip() == "no invoices"
