import msgspec
import pytest

from billing_oss.server.http.types import Reason


class Body(msgspec.Struct):
    reason: Reason


@pytest.mark.parametrize("value", ["ok", " spaced out ", "a\tb"])
def test_reason_accepts_text(value: str) -> None:
    assert msgspec.convert({"reason": value}, Body).reason == value


@pytest.mark.parametrize("value", ["", "   ", "a\x00", "\x00a", "x" * 501])
def test_reason_refuses_blank_nul_and_overlong(value: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"reason": value}, Body)
