"""The one table of error codes: every code has one HTTP status, one exit status and one
class that introduces it; a code outside the table cannot be defined."""

from __future__ import annotations

import importlib
import pkgutil

import msgspec
import pytest

import billing_oss
from billing_oss.core.errors import (
    BillingError,
    ErrorCode,
    FileBusy,
    InvalidValue,
    UnsupportedMediaType,
)
from billing_oss.server.http.problems import from_error


def _import_every_module() -> None:
    for info in pkgutil.walk_packages(billing_oss.__path__, prefix="billing_oss."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)


def _all_error_classes() -> list[type[BillingError]]:
    """The shipped error classes (not the ones the tests below try to define)."""
    found: list[type[BillingError]] = []
    todo: list[type[BillingError]] = [BillingError]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("billing_oss."):
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_code_is_introduced_by_one_class_only() -> None:
    _import_every_module()  # a duplicate anywhere would already fail this import
    introducers: dict[str, list[str]] = {}
    for cls in _all_error_classes():
        if "code" in cls.__dict__:
            assert isinstance(cls.__dict__["code"], ErrorCode), cls
            introducers.setdefault(cls.code, []).append(cls.__qualname__)
    assert {c: names for c, names in introducers.items() if len(names) > 1} == {}
    assert "FILE_BUSY" in introducers and "UNSUPPORTED_MEDIA_TYPE" in introducers


def test_a_second_class_for_a_code_is_refused() -> None:
    with pytest.raises(TypeError, match="already introduced"):
        type("AnotherBusy", (BillingError,), {"code": ErrorCode.FILE_BUSY})
    # Refining the class that introduced the code is the way to a second class.
    refined = type("Moved", (FileBusy,), {})
    assert refined("x").code is ErrorCode.FILE_BUSY


def test_a_code_outside_the_table_is_refused() -> None:
    with pytest.raises(TypeError, match="not an ErrorCode"):
        type("Teapot", (BillingError,), {"code": "TEAPOT"})
    with pytest.raises(TypeError, match="exit status"):
        type("Loud", (InvalidValue,), {"exit_status": 7})


def test_every_code_has_a_client_or_server_status_and_a_documented_exit() -> None:
    for code in ErrorCode:
        assert 400 <= code.http_status <= 599, code
        assert code.exit_status in (1, 2), code  # 1 bad input, 2 usage/config
        assert code.value == code.name


def test_http_answers_every_error_class_with_its_table_status() -> None:
    _import_every_module()
    for cls in _all_error_classes():
        exc = cls.__new__(cls)
        BillingError.__init__(exc, "it went wrong")
        response = from_error(exc, instance="/v1/x")
        assert isinstance(response.body, bytes)
        body = msgspec.json.decode(response.body)
        assert (response.status, body["code"], body["status"]) == (
            cls.code.http_status, cls.code.value, cls.code.http_status), cls


def test_the_codes_once_defined_twice_keep_their_meaning() -> None:
    assert FileBusy("busy").http_status == 409
    assert UnsupportedMediaType("xml").http_status == 415
    assert FileBusy("busy").exit_status == 1
