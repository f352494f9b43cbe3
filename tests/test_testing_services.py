"""messenger_core.testing.services: the helpers the transports' tests share to reach their
services, start servers of their own, and skip (or fail under CI) without them."""

from __future__ import annotations

import socket

import pytest

from messenger_core.testing.services import (
    REQUIRE_SERVICES_VARIABLE,
    free_port,
    port_accepts,
    require_service,
    service_unavailable,
)


def test_port_accepts_while_a_socket_listens_and_not_after_it_closes() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    with listener:
        assert port_accepts(port)
        assert port_accepts(port, host="127.0.0.1", timeout=1)
    assert not port_accepts(port)


def test_free_port_returns_a_port_that_can_be_bound_and_nothing_listens_on() -> None:
    port = free_port()
    assert 0 < port < 65536
    assert not port_accepts(port)
    with socket.create_server(("127.0.0.1", port)) as listener:
        assert listener.getsockname()[1] == port
        assert port_accepts(port)


def test_service_unavailable_skips_with_the_reason_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(REQUIRE_SERVICES_VARIABLE, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"^no broker here$"):
        service_unavailable("no broker here")


def test_service_unavailable_fails_under_the_ci_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(REQUIRE_SERVICES_VARIABLE, "1")
    with pytest.raises(pytest.fail.Exception) as failed:
        service_unavailable("no broker here")
    assert str(failed.value) == f"no broker here ({REQUIRE_SERVICES_VARIABLE}=1)"


def _refused() -> None:
    raise ConnectionRefusedError("refused")


def test_require_service_skips_or_fails_through_service_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dsn = "redis://user:secret@127.0.0.1:1"
    monkeypatch.delenv(REQUIRE_SERVICES_VARIABLE, raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_service("Redis", dsn, _refused)
    assert "Redis is not reachable at" in str(skipped.value)
    assert "ConnectionRefusedError: refused" in str(skipped.value)
    assert "secret" not in str(skipped.value)
    monkeypatch.setenv(REQUIRE_SERVICES_VARIABLE, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{REQUIRE_SERVICES_VARIABLE}=1"):
        require_service("Redis", dsn, _refused)
    require_service("Redis", dsn, lambda: None)  # a probe that connects: nothing happens
