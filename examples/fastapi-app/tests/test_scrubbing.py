"""Secrets and personal data never leave the process: not in Sentry, logs or spans."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from receivers import OtlpReceiver, SentryReceiver, wait_for
from services import FASTAPI_DIR, fastapi_app

from app.scrub import FILTERED, scrub_text, scrub_traceback, scrub_value

SECRETS = {
    "password": "hunter2-correct-horse",
    "token": "tok_9f8e7d6c5b4a",
    "card": "4111 1111 1111 1111",
    "email": "jane.doe@example.com",
    "api_key": "sk_live_51Habc",
}
BEARER = "eyJhbGciOiJIUzI1NiJ9.payload.signature"


def test_request_with_pii_leaves_no_trace_of_it(
    otlp: OtlpReceiver, sentry: SentryReceiver, telemetry_env: dict[str, str]
) -> None:
    with fastapi_app(telemetry_env) as app:
        response = httpx.get(
            f"{app.url}/error",
            params={"kind": "handled", **SECRETS},
            headers={
                "Authorization": f"Bearer {BEARER}",
                "Cookie": "session=s3cr3t-cookie",
                "X-User-Id": "u-42",
            },
        )
        assert response.status_code == 500
        trace_id = response.json()["trace_id"]
        wait_for(lambda: sentry.events(), message="the Sentry event")
        wait_for(
            lambda: any(s.trace_id == trace_id for s in otlp.spans()), message="the server span"
        )
        wait_for(
            lambda: any(r.trace_id == trace_id for r in otlp.log_records()), message="the logs"
        )
    stdout = app.output()  # complete once the service has stopped (stdout is batched)
    assert trace_id in stdout

    sentry_text = json.dumps(sentry.events())
    spans_text = json.dumps([s.attributes for s in otlp.spans()])
    logs_text = json.dumps([[r.body, r.attributes] for r in otlp.log_records()])
    for where, text in {
        "sentry": sentry_text,
        "spans": spans_text,
        "otlp logs": logs_text,
        "stdout": stdout,
    }.items():
        for value in [*SECRETS.values(), BEARER, "s3cr3t-cookie", "4111111111111111"]:
            assert value not in text, f"{value!r} leaked into {where}"
    # Request and user context survive, without personal data.
    event = sentry.events()[0]
    assert event["request"]["method"] == "GET"
    assert event["request"]["url"].endswith("/error")
    assert event["user"] == {"id": "u-42"}
    # Scrubbed, not dropped: the request is still recognisable.
    assert FILTERED in spans_text or "%5BFiltered%5D" in spans_text
    assert "/error" in sentry_text


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        ("card 4242-4242-4242-4242 declined", "4242-4242-4242-4242"),
        ("contact ops@example.org now", "ops@example.org"),
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
        ("/login?user=ann&password=pa55&next=/", "pa55"),
        ("client_secret=xyz123", "xyz123"),
    ],
)
def test_scrub_text_masks_pii(text: str, leaked: str) -> None:
    assert leaked not in scrub_text(text)


def test_scrub_text_keeps_ordinary_numbers_and_ids() -> None:
    text = "order 1234567890123 trace 4bf92f3577b34da6a3ce929d0e0e4736 took 1500 ms"
    assert scrub_text(text) == text  # not a Luhn-valid card, not an email


def test_scrub_value_masks_sensitive_keys_recursively() -> None:
    value = {"user": {"password": "x", "name": "ann"}, "headers": [{"X-Api-Key": "k"}]}
    assert scrub_value("payload", value) == {
        "user": {"password": FILTERED, "name": "ann"},
        "headers": [{"X-Api-Key": FILTERED}],
    }


_PYDANTIC_LIKE = """Traceback (most recent call last):
  File "/srv/app/main.py", line 12, in signup
    user = User(email=form["email"])
pydantic_core._pydantic_core.ValidationError: 1 validation error for User
email
  Value error, jane.doe@example.com is already registered [input_value='jane.doe@example.com']
"""


def test_scrub_traceback_masks_messages_and_leaves_code_alone() -> None:
    text = _PYDANTIC_LIKE.replace("line 12", "line 4111111111111111")  # not data: a frame line
    scrubbed = scrub_traceback(text)
    assert "jane.doe@example.com" not in scrubbed
    assert '  File "/srv/app/main.py", line 4111111111111111, in signup\n' in scrubbed
    assert '    user = User(email=form["email"])\n' in scrubbed
    assert scrubbed.count(FILTERED) == 2


def test_scrub_traceback_scrubs_every_link_of_a_chain() -> None:
    text = (
        'Traceback (most recent call last):\n  File "a.py", line 1, in f\n    g()\n'
        "KeyError: 'token=abc123'\n\nThe above exception was the direct cause of the following"
        ' exception:\n\nTraceback (most recent call last):\n  File "b.py", line 2, in h\n'
        "    f()\nValueError: card 4111 1111 1111 1111 declined\n"
    )
    scrubbed = scrub_traceback(text)
    assert "abc123" not in scrubbed and "4111 1111" not in scrubbed
    assert scrubbed.count('  File "') == 2


def test_exception_logs_are_formatted_once_and_scrubbed(tmp_path: Path) -> None:
    """A logged exception whose message holds an email: the JSON line keeps the traceback and
    the exception's type, without the email."""
    script = tmp_path / "log_exception.py"
    script.write_text(
        "import logging\n"
        "from app.settings import load_settings\n"
        "from app import telemetry\n"
        "telemetry.setup(load_settings())\n"
        "def signup(email):\n"
        "    raise ValueError(f'{email} is already registered')\n"
        "try:\n"
        "    signup('jane.doe' + '@example.com')\n"
        "except ValueError:\n"
        "    logging.getLogger('app').exception('signup failed')\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=FASTAPI_DIR,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(FASTAPI_DIR)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (line,) = [json.loads(x) for x in done.stdout.splitlines() if '"signup failed"' in x]
    assert "jane.doe@example.com" not in done.stdout
    assert line["exception.type"] == "ValueError"
    assert line["exception.message"] == f"{FILTERED} is already registered"
    assert line["exc_info"].startswith("Traceback (most recent call last):\n")
    assert "in signup\n    raise ValueError(" in line["exc_info"]
    assert "^^^" not in line["exc_info"]
