"""PII scrubbing shared by every signal: Sentry events, log records and span attributes.

Two rules, applied everywhere:
- a value stored under a sensitive key (password, token, card number, ...) is replaced whole;
- free text (messages, URLs, query strings) has card numbers, emails, social-security numbers,
  bearer tokens and sensitive ``key=value`` pairs masked in place.

Query strings (``url.query``, Sentry's ``query_string``, the query of a URL) are judged
parameter by parameter on their decoded text: ``%40`` is an ``@`` and ``%20`` a space there.
The cases both services must pass are in examples/contract.yaml.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote_plus

FILTERED = "[Filtered]"

_SENSITIVE_KEY = re.compile(
    r"pass(word|wd)?|secret|token|api[-_]?key|auth(orization)?|cookie|session|"
    r"credit[-_]?card|card[-_]?(number|no)?|\bcc\b|cvv|cvc|ssn|social[-_]?security|private[-_]?key|"
    r"e-?mail",
    re.IGNORECASE,
)
# key=value pairs in query strings, form bodies and log text. The look-behind starts a match
# only where a key starts: the same matches, without retrying from every character inside a
# word, which made this pattern cost ~1 us per character of text.
_SENSITIVE_PAIR = re.compile(
    r"(?<![\w.-])(?P<key>[\w.-]*(?:pass(?:word|wd)?|secret|token|api[-_]?key|auth|cookie|session|card|"
    r"cvv|cvc|ssn|e-?mail)[\w.-]*)(?P<sep>=|:\s*)(?P<value>[^&\s,;\"']+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
# Also URL-encoded (``%40``), as emails appear in URLs written into free text.
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# US social-security numbers as written: 3-2-4 digits.
_SSN = re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])")
# 13-19 digits, optionally grouped by spaces or dashes; confirmed with the Luhn checksum so
# that ordinary long numbers (ids, timestamps) survive.
_CARD_CANDIDATE = re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])")


# Every pattern below needs one of these; most log lines and attributes have none, and one
# search is much cheaper than four substitutions.
_MAY_HOLD_PII = re.compile(r"[=@:]|%40|\d{4}|bearer|basic", re.IGNORECASE)
# Substrings every _SENSITIVE_PAIR key contains: cheap `in` tests before the pattern.
_PAIR_WORDS = frozenset(
    {"pass", "secret", "token", "api", "auth", "cookie", "session", "card", "cvv", "cvc", "ssn"}
    | {"mail"}
)


@functools.lru_cache(maxsize=4096)  # keys repeat (attribute names, log fields): match once
def is_sensitive_key(key: str) -> bool:
    return bool(_SENSITIVE_KEY.search(key))


def scrub_text(text: str) -> str:
    if not text or not _MAY_HOLD_PII.search(text):
        return text
    lowered = text.casefold()  # folds case as re.IGNORECASE does
    # Whole-token patterns first: a card number with spaces or a "Bearer x" would otherwise be
    # cut in half by the key=value rule, which stops at whitespace.
    if "bearer" in lowered or "basic" in lowered:
        text = _BEARER.sub(lambda m: f"{m.group(1)} {FILTERED}", text)
    text = _CARD_CANDIDATE.sub(_mask_card, text)
    if "-" in text:
        text = _SSN.sub(FILTERED, text)
    if "@" in text or "%40" in text:
        text = _EMAIL.sub(FILTERED, text)
    if ("=" in text or ":" in text) and any(word in lowered for word in _PAIR_WORDS):
        text = _SENSITIVE_PAIR.sub(lambda m: f"{m['key']}{m['sep']}{FILTERED}", text)
    return text


# The same traceback is scrubbed for the log line, then again by the span exporter (the
# span event's copy), and an error storm repeats one traceback many times: remembered.
@functools.lru_cache(maxsize=64)
def scrub_traceback(text: str) -> str:
    """A formatted Python traceback with its exception messages scrubbed.

    Frame lines (``  File "...", line N, in f``) and the source lines printed under them hold
    code, not data, and are most of a traceback: scrubbing only the rest costs a tenth. Every
    other line is scrubbed: exception messages, their continuation lines (a pydantic error
    lists input values, indented) and the chaining notes.
    """
    kept: list[str] = []
    message: list[str] = []
    in_frame = False
    for line in text.splitlines(keepends=True):
        if line.startswith('  File "'):
            in_frame = True
        elif not (in_frame and line.startswith("    ")):
            in_frame = False
            message.append(line)
            continue
        if message:
            kept.append(scrub_text("".join(message)))
            message = []
        kept.append(line)
    if message:
        kept.append(scrub_text("".join(message)))
    return "".join(kept)


# Keys whose values are query strings or URLs (span attributes, Sentry's request context).
_QUERY_KEYS = frozenset({"url.query", "query_string"})
_URL_KEYS = frozenset({"url.full", "url", "http.url"})
# Kept as they are when a scrubbed parameter is encoded again: "[Filtered]" stays readable.
_UNENCODED = "[]"


def scrub_query(query: str) -> str:
    """A URL query string, each parameter judged on its decoded text. A parameter with
    nothing to hide keeps its encoding; one that had something is encoded again from its
    scrubbed text (``note=call%20[Filtered]``)."""
    parts = []
    for pair in query.split("&"):
        key, sep, value = pair.partition("=")
        if sep and value and is_sensitive_key(unquote_plus(key)):
            parts.append(f"{key}={FILTERED}")
            continue
        decoded = unquote_plus(value if sep else key)
        scrubbed = scrub_text(decoded)
        if scrubbed == decoded:
            parts.append(pair)
        else:
            encoded = quote(scrubbed, safe=_UNENCODED)
            parts.append(f"{key}={encoded}" if sep else encoded)
    return "&".join(parts)


def scrub_url(url: str) -> str:
    base, sep, query = url.partition("?")
    return scrub_text(base) + sep + scrub_query(query) if sep else scrub_text(url)


def scrub_value(key: str, value: Any) -> Any:
    """Scrub ``value`` found under ``key``, recursing into containers."""
    if is_sensitive_key(key) and value not in (None, "", FILTERED):
        return FILTERED
    if isinstance(value, str):
        if key in _QUERY_KEYS:
            return scrub_query(value)
        if key in _URL_KEYS:
            return scrub_url(value)
        return scrub_traceback(value) if key.endswith("stacktrace") else scrub_text(value)
    if isinstance(value, Mapping):
        return {k: scrub_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(scrub_value(key, v) for v in value)
    return value


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return FILTERED if 13 <= len(digits) <= 19 and _luhn_valid(digits) else match.group(0)


def _luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        n = int(char)
        if index % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0
