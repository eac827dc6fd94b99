"""``workervoice simulate {sms,ussd,voice}``: the simulators drive a running service's real
webhooks as the providers do, and show what the phone would show or say."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from gateway import simulate

from .conftest import AT_TOKEN, TWILIO_TOKEN
from .e2e.processes import free_port
from .support import PUBLIC_URL, add_workplace


@pytest.fixture
def served(app) -> Iterator[str]:
    """The test app on a loopback port, as `make run` would serve it."""
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    thread.join(timeout=5)


def typed(monkeypatch, *lines: str) -> None:
    """What the administrator types at the simulator's prompts, then end of input."""
    keys = iter(lines)

    def read(prompt: str = "") -> str:
        try:
            return next(keys)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", read)


def test_the_ussd_simulator_dials_pages_and_answers(served, services, monkeypatch, capsys):
    add_workplace(services, code="4321")
    typed(monkeypatch, "98", "00", "2", "1", "4321")
    simulate.run_ussd(served, AT_TOKEN, "+8801711000901")
    screens = capsys.readouterr().out
    assert "1. বাংলা\n2. English\n98. আরও" in screens  # the menu's first page, in Bangla
    assert "6. தமிழ்\n00. পেছনে" in screens  # the second page, and back
    assert "Do you agree?\n1. I agree\n2. I do not agree" in screens
    assert "Thank you, you are enrolled." in screens


def test_the_voice_simulator_keys_silence_and_hangs_up(served, services, monkeypatch, capsys):
    add_workplace(services, code="4321")
    typed(monkeypatch, "2", "1", "4321#", "", "h")
    simulate.run_voice(served, PUBLIC_URL, TWILIO_TOKEN, "+8801711000902")
    heard = capsys.readouterr().out
    assert "(en-US) Press 2 for English" in heard and "(bn-IN) বাংলা হলে 1 চাপুন" in heard
    assert "(en-US) Key the code, then press the hash key." in heard
    assert "(en-US) Thank you, you are enrolled." in heard
    assert "[silence]\n(en-US) We did not hear your answer." in heard
    assert heard.rstrip().endswith("[you hung up]")


def test_the_sms_simulator_texts_the_service(served, services, monkeypatch, capsys):
    typed(monkeypatch, "hello", "")
    simulate.run(served, PUBLIC_URL, TWILIO_TOKEN, "+8801711000903")
    assert "1. বাংলা\n2. English" in capsys.readouterr().out
