# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""Redaction: registered secrets and the patterns that look like secrets."""

from __future__ import annotations

import pytest

import rollback_drill.evidence.redact as redact_module
from rollback_drill.evidence.redact import MASK, Redactor, dsn_password


@pytest.fixture
def redactor() -> Redactor:
    return Redactor()


# -- registered secrets ------------------------------------------------------------


def test_registered_secret_is_masked_everywhere_in_text(redactor):
    redactor.add_secret("hunter2-long")
    assert redactor.redact_text("a hunter2-long b hunter2-long") == "a *** b ***"


def test_secrets_shorter_than_four_characters_are_ignored(redactor):
    redactor.add_secret("abc")
    redactor.add_secret("")
    assert redactor.secret_count == 0
    assert redactor.redact_text("abc") == "abc"


def test_secret_of_four_characters_is_registered(redactor):
    redactor.add_secret("abcd")
    assert redactor.redact_text("xabcdx") == "x***x"


def test_longer_secret_is_masked_whole_when_it_contains_a_shorter_one(redactor):
    redactor.add_secret("pass1234")
    redactor.add_secret("pass1234-extended")
    assert redactor.redact_text("v=pass1234-extended") == "v=***"


def test_url_encoded_form_of_a_secret_is_masked(redactor):
    redactor.add_secret("p@ss w/rd")
    assert redactor.redact_text("p%40ss%20w%2Frd") == MASK


def test_secret_with_regex_metacharacters_is_matched_literally(redactor):
    redactor.add_secret("a.b*c+d")
    assert redactor.redact_text("a.b*c+d axbbbcd") == "*** axbbbcd"


# -- patterns ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://drill:s3cr3t@127.0.0.1:5432/taskdb", "postgresql://drill:***@127.0.0.1:5432/taskdb"),
        ("postgres://u:pw@h/db", "postgres://u:***@h/db"),
        ("amqp+ssl://user:pw@broker", "amqp+ssl://user:***@broker"),
        ("redis://:onlypass@host:6379/0", "redis://:***@host:6379/0"),
        ("postgresql://u:p@ss@host/db", "postgresql://u:***@host/db"),
    ],
)
def test_password_in_urls_and_dsns(redactor, text, expected):
    assert redactor.redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "https://api.example:8443/v1/flows?repo=a",
        "https://host/path/user@example",
        "see http://127.0.0.1:9000/metrics",
    ],
)
def test_urls_without_a_password_are_unchanged(redactor, text):
    assert redactor.redact_text(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "host=127.0.0.1 user=drill password=xyz123 dbname=taskdb",
            "host=127.0.0.1 user=drill password=*** dbname=taskdb",
        ),
        ("host=h password='a b c' dbname=d", "host=h password=*** dbname=d"),
        ("PASSWORD=topsecret", "PASSWORD=***"),
        ("Password = spaced", "Password = ***"),
        ("PGPASSWORD=topsecret psql -h h", "PGPASSWORD=*** psql -h h"),
        ("https://h/cb?access_token=abc123&x=1", "https://h/cb?access_token=***&x=1"),
    ],
)
def test_password_key_value_forms(redactor, text, expected):
    assert redactor.redact_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer ***"),
        ("curl -H 'Authorization: Bearer abc.def'", "curl -H 'Authorization: Bearer ***'"),
        ("authorization: Basic dXNlcjpwdw==", "authorization: Basic ***"),
        ("Authorization: rawtoken", "Authorization: ***"),
        ("sent with Bearer eyJhbGciOi.J9x_y", "sent with Bearer ***"),
        ("bearer abc/def+ghi==", "bearer ***"),
    ],
)
def test_authorization_and_bearer(redactor, text, expected):
    assert redactor.redact_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SLACK_TOKEN=xoxb-1-2-3", "SLACK_TOKEN=***"),
        ("WEBHOOK_SECRET=shh", "WEBHOOK_SECRET=***"),
        ("SMTP_PASSWORD=pw", "SMTP_PASSWORD=***"),
        ("PAGERDUTY_API_KEY=pdkey", "PAGERDUTY_API_KEY=***"),
        ("SIGNING_KEY=k1k1k1", "SIGNING_KEY=***"),
        ("env A=1 GH_TOKEN=ghp_x B=2", "env A=1 GH_TOKEN=*** B=2"),
    ],
)
def test_env_style_assignments_of_secret_names(redactor, text, expected):
    assert redactor.redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "max_tokens=100 tokens=5",
        "sort_key=name",
        "secret_env=SLACK_SECRET",
        "REPO_ALLOWLIST=compliance-service",
        "Restricted to pilot scope",
        'When the SRE performs Step 1 "Disable orchestrator for expanded repos" within 2 minutes',
    ],
)
def test_ordinary_text_is_unchanged(redactor, text):
    assert redactor.redact_text(text) == text


def test_quoted_mapping_printed_into_text_keeps_its_quotes(redactor):
    text = """{"password": "pw", 'api_key': 'k', "tokens_used": 5}"""
    assert redactor.redact_text(text) == """{"password": "***", 'api_key': '***', "tokens_used": 5}"""


def test_redact_text_is_idempotent(redactor):
    redactor.add_secret("registered-secret")
    text = "postgresql://u:pw@h/db password=x Authorization: Bearer t SLACK_TOKEN=y registered-secret"
    once = redactor.redact_text(text)
    assert redactor.redact_text(once) == once


# -- structures --------------------------------------------------------------------


def test_redact_walks_dicts_lists_and_tuples(redactor):
    redactor.add_secret("planted-secret")
    data = {
        "a": ["x planted-secret", ("planted-secret", 3)],
        "b": {"c": "postgresql://u:pw@h/db"},
        "n": 1.5,
        "flag": True,
        "none": None,
    }
    assert redactor.redact(data) == {
        "a": ["x ***", ("***", 3)],
        "b": {"c": "postgresql://u:***@h/db"},
        "n": 1.5,
        "flag": True,
        "none": None,
    }


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "token",
        "access_token",
        "secret",
        "client_secret",
        "api_key",
        "apiKey",
        "api-key",
        "Authorization",
        "routing_key",
        "credentials",
    ],
)
def test_values_under_secret_keys_are_masked_whole(redactor, key):
    assert redactor.redact({key: "anything at all"}) == {key: MASK}
    assert redactor.redact({key: {"nested": "structure"}}) == {key: MASK}


@pytest.mark.parametrize("key", ["tokens_used", "secret_env", "token_count", "dedup_key", "name", "passed"])
def test_values_under_ordinary_keys_are_kept(redactor, key):
    assert redactor.redact({key: "value"}) == {key: "value"}


def test_none_under_a_secret_key_stays_none(redactor):
    assert redactor.redact({"password": None}) == {"password": None}


def test_redact_does_not_change_its_input(redactor):
    data = {"password": "pw", "list": ["postgresql://u:pw@h/db"]}
    redactor.redact(data)
    assert data == {"password": "pw", "list": ["postgresql://u:pw@h/db"]}


# -- environment -------------------------------------------------------------------


def test_from_environment_registers_values_of_secret_names():
    environ = {
        "SLACK_TOKEN": "xoxb-planted",
        "WEBHOOK_SECRET": "webhook-planted",
        "SMTP_PASSWORD": "smtp-planted",
        "PD_API_KEY": "pd-planted",
        "SIGNING_KEY": "signing-planted",
        "PGPASSWORD": "pg-planted",
        "HOME": "/home/sre",
        "PATH": "/usr/bin",
    }
    redactor = Redactor.from_environment(environ)
    text = " ".join(environ.values())
    assert redactor.redact_text(text) == "*** *** *** *** *** *** /home/sre /usr/bin"


@pytest.mark.parametrize(
    ("dsn", "password"),
    [
        ("postgresql://drill:dsn-planted@db.staging:5432/taskdb", "dsn-planted"),
        ("postgresql://drill:p%40ss-planted@db/taskdb", "p@ss-planted"),
        ("host=db user=drill password=kw-planted dbname=taskdb", "kw-planted"),
        ("host=db password='quoted planted' dbname=taskdb", "quoted planted"),
        ("host=db dbname=taskdb", None),
        ("postgresql://drill@db/taskdb", None),
    ],
)
def test_dsn_password(dsn, password):
    assert dsn_password(dsn) == password


def test_from_environment_registers_the_taskdb_dsn_password():
    redactor = Redactor.from_environment({"ROLLBACK_DRILL_TASKDB_DSN": "host=db password=kw-planted dbname=t"})
    # The bare password is masked wherever it appears, not only inside a DSN.
    assert redactor.redact_text("error: auth failed for kw-planted") == "error: auth failed for ***"
    encoded = Redactor.from_environment({"ROLLBACK_DRILL_TASKDB_DSN": "postgresql://u:p%40ss-planted@db/t"})
    assert encoded.redact_text("p@ss-planted and p%40ss-planted") == "*** and ***"


def test_module_functions_delegate_to_the_default_redactor():
    planted = "module-level-planted-7f3a"
    assert redact_module.redact_text(planted) == planted
    redact_module.add_secret(planted)
    assert redact_module.REDACTOR.redact_text(planted) == MASK
    assert redact_module.redact_text(f"x {planted}") == "x ***"
    assert redact_module.redact({"k": [planted]}) == {"k": [MASK]}
