# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""Redaction: the one place that decides what a secret looks like.

Everything the drill writes (timeline, evidence, reports, messages) goes through a
``Redactor``. It masks two kinds of secret:

- values it was told about (``add_secret``), such as the TaskDB password and the
  tokens found in the environment (``from_environment``); and
- values that look like secrets wherever they appear: the password of a URL or DSN,
  ``password=...`` pairs, ``Authorization``/``Bearer`` credentials,
  ``NAME=value`` where NAME ends in ``_TOKEN``, ``_SECRET``, ``_PASSWORD``,
  ``_API_KEY`` or ``_KEY``, YAML and header pairs (``password: x``, ``apiKey: x``,
  ``client-key-data: x``, ``X-Api-Key: x``, ``aws_secret_access_key = x``), Kubernetes
  env pairs (``name: DB_PASSWORD`` then ``value: x``, in YAML or JSON), PEM private key
  blocks, JWTs, Slack and GitHub tokens, ``Cookie``/``Set-Cookie`` headers and the
  signature of a signed URL (``X-Amz-Signature=``, ``sig=``).

A key names a secret when it *ends* with the secret word: ``password_policy: strict``,
``client-certificate-data`` or ``tokens_used`` stay readable.

Every pattern is linear in its input: no two quantifiers compete for the same
characters, so a megabyte of hostile text costs a megabyte of scanning.

Masking errs on the side of hiding too much: a masked harmless word costs a reader a
moment, a leaked password costs a rotation.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit

MASK: Final = "***"
"""What a secret is replaced with."""

MIN_SECRET_LENGTH: Final = 4
"""Shorter values are not registered: masking every "abc" would shred the evidence
and hide nothing worth hiding."""

SECRET_ENV_SUFFIXES: Final = ("_TOKEN", "_SECRET", "_PASSWORD", "_API_KEY", "_KEY")
"""Environment variables whose names end like this hold secrets."""

SECRET_ENV_NAMES: Final = frozenset({"PGPASSWORD"})
"""Environment variables that hold secrets although their names do not say so by suffix."""

TASKDB_DSN_ENV: Final = "ROLLBACK_DRILL_TASKDB_DSN"
"""The TaskDB DSN of the ``dsn`` provider (CONVENTIONS); its password is a secret."""

# A key in a mapping whose whole value is a secret: the key is the word itself or ends
# with "_<word>" (access_token, client_secret, routing_key, ...). "tokens_used" or
# "secret_env" (the *name* of a variable) stay readable.
_SENSITIVE_KEY_RE: Final = re.compile(
    r"(?:^|_)(?:password|passwd|token|secret|api_?key|authorization|credentials?"
    r"|private_key|access_key|secret_key|routing_key|integration_key|client_key_data|cookie)$"
)

# The words a key ends with when its value is a secret, in text (any case; "-" or "_" between parts).
_SENSITIVE_WORD: Final = (
    r"(?:password|passwd|token|secret|api[_-]?key|private[_-]?key|access[_-]?key|client[_-]key[_-]data"
    r"|routing[_-]?key|integration[_-]?key|credentials?)"
)

# An environment variable's name that says it holds a secret (DB_PASSWORD, SLACK_BOT_TOKEN, SIGNING_KEY).
_SENSITIVE_ENV_NAME: Final = r"[A-Za-z0-9_]*(?:password|passwd|token|secret|api_?key|_key|credentials?)"

# scheme://user:PASSWORD@host — any scheme, user may be empty. The password runs to the
# last "@" before a "/" or whitespace, so an unencoded "@" inside it is masked too, and
# a port or a path is never taken for it.
_URL_PASSWORD_RE: Final = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@]*:)(?P<secret>[^\s/]+)(?=@)")

# The value of a key=value pair: a quoted string (libpq allows 'a b'), or up to the
# next whitespace, "&" (query strings) or quote.
_VALUE: Final = r"""(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s&'"]+)"""

# password=xyz, PGPASSWORD=xyz, access_token=xyz, client_secret=xyz, api_key=xyz ...
# (any case), as in libpq keyword DSNs, query strings and shell-style assignments.
_KEY_VALUE_RE: Final = re.compile(
    rf"(?P<head>(?<![A-Za-z0-9_])[A-Za-z0-9_.-]*{_SENSITIVE_WORD}\s*=\s*)(?P<secret>{_VALUE})",
    re.IGNORECASE,
)

# password: x, apiKey: x, client-key-data: x, token: x, X-Api-Key: x (YAML, kubeconfig, HTTP
# headers, log lines). The value is a quoted string (its quotes kept) or words up to the end of
# the line, a comma or a quote; "password_policy: strict" ends in another word and stays. A key
# followed by its quote ("password": ...) is JSON and is left to _QUOTED_KEY_RE.
_COLON_KEY_RE: Final = re.compile(
    rf"(?P<head>(?<![A-Za-z0-9_.-])[A-Za-z0-9_.-]*{_SENSITIVE_WORD}[ \t]*:[ \t]*)"
    r"""(?P<secret>"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|(?!\*\*\*)[^\s'",#]+(?:[ \t]+[^\s'",#]+)*)""",
    re.IGNORECASE,
)

# A Kubernetes env pair: "- name: DB_PASSWORD" and, on the next line, "value: x".
_ENV_PAIR_YAML_RE: Final = re.compile(
    rf"(?P<head>\bname:[ \t]*[\"']?{_SENSITIVE_ENV_NAME}[\"']?[ \t]*\r?\n[ \t]*value:[ \t]*)"
    r"""(?P<secret>"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[^\s'"]+)""",
    re.IGNORECASE,
)

# The same pair in JSON: {"name": "DB_PASSWORD", "value": "x"}; the quotes stay.
_ENV_PAIR_JSON_RE: Final = re.compile(
    rf"""(?P<head>"name"\s*:\s*"{_SENSITIVE_ENV_NAME}"\s*,\s*"value"\s*:\s*")(?P<secret>(?:[^"\\]|\\.)*)(?=")""",
    re.IGNORECASE,
)

# -----BEGIN [RSA |EC |OPENSSH |ENCRYPTED ]PRIVATE KEY----- ... -----END ...-----: the body goes,
# the armour lines stay. A block cut off before its END line is masked to the end of the text.
_PEM_PRIVATE_KEY_RE: Final = re.compile(
    r"(?P<head>-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----)(?P<secret>(?:[^-]|-(?!----END ))+)"
)

# A JSON Web Token: header.payload.signature, the first two base64url-encoded JSON ("eyJ").
_JWT_RE: Final = re.compile(r"(?P<head>)\beyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

# Tokens with a prefix that says what they are: Slack (xoxb-, xoxp-, xoxa-, xoxs-, xoxr-) and
# GitHub (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_).
_PREFIXED_TOKEN_RE: Final = re.compile(
    r"(?P<head>)(?<![A-Za-z0-9_])(?:xox[abposr]-[A-Za-z0-9-]+|gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{16,})"
)

# The signature (and what signs it) of a signed URL's query: S3/GCS presigned URLs, Azure SAS,
# CloudFront. token= and access_token= are already _KEY_VALUE_RE's.
_SIGNED_URL_RE: Final = re.compile(
    r"(?P<head>[?&](?:[A-Za-z0-9-]*signature|sig|x-amz-credential|x-goog-credential|key-pair-id|policy)=)"
    r"(?P<secret>[^&\s#'\"]+)",
    re.IGNORECASE,
)

# Cookie: a=b; c=d and Set-Cookie: session=...; Path=/ — the whole header value.
_COOKIE_RE: Final = re.compile(
    r"(?P<head>\b(?:set-)?cookie[ \t]*:[ \t]*)(?P<secret>(?!\*\*\*)[^\s'\"][^\r\n'\"]*)", re.IGNORECASE
)

# kubectl --token xyz, --password xyz (the "=" form is _KEY_VALUE_RE's).
_FLAG_RE: Final = re.compile(
    rf"(?P<head>(?<![A-Za-z0-9_-])--[A-Za-z0-9-]*{_SENSITIVE_WORD}[ \t]+)(?P<secret>(?!\*\*\*|-)[^\s'\"]+)",
    re.IGNORECASE,
)

# NAME=value with an environment-style NAME ending in _KEY (the other suffixes are
# covered, in any case, by _KEY_VALUE_RE). Upper case only: "sort_key=name" is not a secret.
_ENV_KEY_RE: Final = re.compile(rf"(?P<head>(?<![A-Za-z0-9_])[A-Z][A-Z0-9_]*_KEY=)(?P<secret>{_VALUE})")

# "password": "xyz" and 'token': 'xyz' — a mapping printed into a message. The quotes
# around the value stay, so JSON stays JSON.
_QUOTED_KEY_RE: Final = re.compile(
    rf"""(?P<head>(?P<q>["'])[A-Za-z0-9_.-]*(?:{_SENSITIVE_WORD}|authorization|cookie)(?P=q)"""
    r"""\s*:\s*(?P<v>["']))(?P<secret>(?:(?!(?P=v))[^\\]|\\.)*)(?=(?P=v))""",
    re.IGNORECASE,
)

# Authorization: Bearer xyz / Authorization: Basic xyz / Authorization=xyz. The scheme is
# matched possessively, so "Authorization: Bearer ***" is left alone rather than the
# scheme word being taken for the credential.
_AUTHORIZATION_RE: Final = re.compile(
    r"(?P<head>\bauthorization\s*[:=]\s*(?:(?:bearer|basic|token|digest)\s+)?+)(?P<secret>(?!\*\*\*)[^\s'\",]+)",
    re.IGNORECASE,
)

# A bare bearer token: "Bearer xyz".
_BEARER_RE: Final = re.compile(r"(?P<head>\bbearer\s+)(?P<secret>(?!\*\*\*)[A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)

_PATTERNS: Final = (
    _PEM_PRIVATE_KEY_RE,
    _JWT_RE,
    _PREFIXED_TOKEN_RE,
    _URL_PASSWORD_RE,
    _SIGNED_URL_RE,
    _AUTHORIZATION_RE,
    _BEARER_RE,
    _COOKIE_RE,
    _ENV_PAIR_JSON_RE,
    _ENV_PAIR_YAML_RE,
    _QUOTED_KEY_RE,
    _KEY_VALUE_RE,
    _ENV_KEY_RE,
    _COLON_KEY_RE,
    _FLAG_RE,
)


_SENSITIVE_ENV_NAME_RE: Final = re.compile(_SENSITIVE_ENV_NAME, re.IGNORECASE)
_QUOTES_KEPT: Final = (_COLON_KEY_RE, _ENV_PAIR_YAML_RE)


def _mask_match(match: re.Match[str]) -> str:
    secret = match.groupdict().get("secret") or ""
    quoted = len(secret) >= 2 and secret[0] == secret[-1] and secret[0] in "'\""
    if quoted and match.re in _QUOTES_KEPT:
        return match.group("head") + secret[0] + MASK + secret[0]  # YAML stays YAML
    if match.re is _PEM_PRIVATE_KEY_RE:
        return match.group("head") + "\n" + MASK + "\n"
    return match.group("head") + MASK


def is_sensitive_key(key: str) -> bool:
    """Whether the whole value under this mapping key is a secret."""
    return _SENSITIVE_KEY_RE.search(key.lower().replace("-", "_")) is not None


def is_secret_env_name(name: str) -> bool:
    upper = name.upper()
    return upper in SECRET_ENV_NAMES or upper.endswith(SECRET_ENV_SUFFIXES)


def dsn_password(dsn: str) -> str | None:
    """The password of a URL DSN (``postgresql://u:pw@h/db``) or a libpq keyword DSN
    (``host=h password=pw``), or None when it has none."""
    if "://" in dsn:
        try:
            password = urlsplit(dsn).password
        except ValueError:
            password = None
        return unquote(password) if password else None
    match = re.search(r"(?:^|\s)password\s*=\s*(" + _VALUE + ")", dsn, re.IGNORECASE)
    if match is None:
        return None
    value = match.group(1)
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    return value or None


class Redactor:
    """Masks registered secrets and secret-looking values in text and in JSON-like data.

    Thread-safe: probes register and redact from their own threads.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._secret_re: re.Pattern[str] | None = None
        for value in secrets:
            self.add_secret(value)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Redactor:
        """A redactor that knows the secrets in ``environ`` (see ``register_environment``)."""
        redactor = cls()
        redactor.register_environment(environ)
        return redactor

    def register_environment(self, environ: Mapping[str, str]) -> None:
        """Register the values of variables named like secrets (``*_TOKEN``, ``*_SECRET``,
        ``*_PASSWORD``, ``*_API_KEY``, ``*_KEY``, ``PGPASSWORD``) and the password of
        ``ROLLBACK_DRILL_TASKDB_DSN``."""
        for name, value in environ.items():
            if is_secret_env_name(name):
                self.add_secret(value)
        dsn = environ.get(TASKDB_DSN_ENV)
        if dsn:
            password = dsn_password(dsn)
            if password:
                self.add_secret(password)

    def add_secret(self, value: str) -> None:
        """Mask ``value`` from now on, also in its URL-encoded form. Values shorter than
        ``MIN_SECRET_LENGTH`` are ignored."""
        if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
            return
        forms = {value, quote(value, safe="")}
        with self._lock:
            if forms <= self._secrets:
                return
            self._secrets |= forms
            # Longest first, so a secret that contains another is masked whole.
            ordered = sorted(self._secrets, key=lambda s: (-len(s), s))
            self._secret_re = re.compile("|".join(re.escape(s) for s in ordered))

    @property
    def secret_count(self) -> int:
        """How many distinct strings are masked (a secret and its URL-encoded form count apart)."""
        with self._lock:
            return len(self._secrets)

    def redact_text(self, text: str) -> str:
        """``text`` with every registered secret and every secret-looking value masked."""
        secret_re = self._secret_re
        if secret_re is not None:
            text = secret_re.sub(MASK, text)
        for pattern in _PATTERNS:
            text = pattern.sub(_mask_match, text)
        return text

    def redact(self, obj: Any) -> Any:
        """A redacted copy of ``obj``: strings are redacted, mappings, lists and tuples are
        walked, and the value under a key named like a secret (password, token, secret,
        api_key, authorization, ...) is masked whole. Other values are returned as they are."""
        if isinstance(obj, str):
            return self.redact_text(obj)
        if isinstance(obj, Mapping):
            out: dict[Any, Any] = {}
            # A Kubernetes env entry, {"name": "DB_PASSWORD", "value": "x"}: the name says what the value is.
            env_secret = isinstance(obj.get("name"), str) and _SENSITIVE_ENV_NAME_RE.fullmatch(obj["name"]) is not None
            for key, value in obj.items():
                secret_key = isinstance(key, str) and is_sensitive_key(key)
                if value is not None and (secret_key or (env_secret and key == "value")):
                    out[key] = MASK
                else:
                    out[key] = self.redact(value)
            return out
        if isinstance(obj, list):
            return [self.redact(item) for item in obj]
        if isinstance(obj, tuple):
            return tuple(self.redact(item) for item in obj)
        return obj


REDACTOR: Final = Redactor.from_environment(os.environ)
"""The process-wide redactor. It knows the secrets in the environment at import time;
call ``REDACTOR.register_environment`` again after changing the environment."""


def redact(obj: Any) -> Any:
    return REDACTOR.redact(obj)


def redact_text(text: str) -> str:
    return REDACTOR.redact_text(text)


def add_secret(value: str) -> None:
    REDACTOR.add_secret(value)
