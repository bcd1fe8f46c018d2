import pytest

from billing_oss.native import _probe


def test_native_extension_builds_and_adds() -> None:
    assert _probe.add_micros(1_500_000, -500_000) == 1_000_000


def test_native_extension_refuses_to_wrap() -> None:
    with pytest.raises(OverflowError, match="overflows"):
        _probe.add_micros(2**63 - 1, 1)
