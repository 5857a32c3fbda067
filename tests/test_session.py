"""redray/session.py: the process's current client, and connecting on first use."""

from __future__ import annotations

from typing import Any

import pytest
from target_ray import redray_only

from redray import session

pytestmark = redray_only


@pytest.fixture
def empty_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """No client and no connector (restored afterwards: other tests share the process)."""
    monkeypatch.setattr(session, "_client", None)
    monkeypatch.setattr(session, "_address", "")
    monkeypatch.setattr(session, "_connect", None)


def test_without_a_connector_the_error_says_to_call_init(empty_session: None) -> None:
    with pytest.raises(RuntimeError, match=r"redray.init\(\)"):
        session.current_client()


def test_first_use_connects_once(empty_session: None) -> None:
    client: Any = object()
    calls = []

    def connect() -> None:
        calls.append(1)
        session.set_client(client, "127.0.0.1:6379")

    session.set_connector(connect)
    assert session.current_client() is client
    assert session.current_client() is client
    assert calls == [1]
    assert session.current_address() == "127.0.0.1:6379"


def test_clearing_the_client_forgets_the_address(empty_session: None) -> None:
    session.set_client(object(), "somewhere")  # type: ignore[arg-type]
    assert session.is_connected()
    session.set_client(None)
    assert not session.is_connected()
    assert session.client_if_connected() is None
    assert session.current_address() == ""


def test_api_registers_init_as_the_connector() -> None:
    import redray.api

    assert session._connect is redray.api.init
    assert redray.api.current_client is session.current_client
