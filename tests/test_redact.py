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


# -- every shape of secret: the value goes, the text around it stays ------------------------------------

_PEM = (
    "key follows\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAplanted1\nQm9yaW5nIGJhc2U2NA==\n"
    "-----END RSA PRIVATE KEY-----\nafter the key"
)
_PEM_ENCRYPTED = (
    "-----BEGIN ENCRYPTED PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,AB12\n"
    "MIIFHzBJBgkqplanted2\n-----END ENCRYPTED PRIVATE KEY-----"
)
_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkcmlsbCJ9.c2lnbmF0dXJlcGxhbnRlZA"

# (text, the secret that must go, text that must stay)
SHAPES = [
    # YAML and kubeconfig
    ("password: hunter2plain\nuser: drill", "hunter2plain", ["password: ", "user: drill"]),
    ("  token: tok-yaml-0001\n  name: a", "tok-yaml-0001", ["token: ", "name: a"]),
    ("secret: s3cr3t-yaml\nkind: Secret", "s3cr3t-yaml", ["secret: ", "kind: Secret"]),
    ("apiKey: ak-yaml-0002\nregion: eu", "ak-yaml-0002", ["apiKey: ", "region: eu"]),
    ("api_key: 'quoted-yaml-key'", "quoted-yaml-key", ["api_key: '***'"]),
    ('db_password: "with spaces inside"', "with spaces inside", ['db_password: "***"']),
    ("password: several plain words\nnext: line", "several plain words", ["password: ", "next: line"]),
    (
        "users:\n- name: drill\n  user:\n    client-certificate-data: LS0tCERTDATA\n    client-key-data: LS0tKEYDATA0001",
        "LS0tKEYDATA0001",
        ["client-certificate-data: LS0tCERTDATA", "client-key-data: "],
    ),
    ("    token: kubeconfig-token-0003\n", "kubeconfig-token-0003", ["token: "]),
    ("aws_secret_access_key = wJalrXUtnFEMIK7MDENG", "wJalrXUtnFEMIK7MDENG", ["aws_secret_access_key = "]),
    ("aws_secret_access_key: wJalrColonForm0004", "wJalrColonForm0004", ["aws_secret_access_key: "]),
    ("AWS_SECRET_ACCESS_KEY=wJalrEnvForm0005", "wJalrEnvForm0005", ["AWS_SECRET_ACCESS_KEY="]),
    ("aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "never-present", ["aws_access_key_id = AKIAIOSFODNN7EXAMPLE"]),
    ("private_key: pk-yaml-0006", "pk-yaml-0006", ["private_key: "]),
    ("credentials: cred-yaml-0007", "cred-yaml-0007", ["credentials: "]),
    # Kubernetes env pairs
    ("- name: DB_PASSWORD\n  value: envpw-0008\n- name: MODE", "envpw-0008", ["name: DB_PASSWORD", "MODE"]),
    ('- name: "SLACK_BOT_TOKEN"\n  value: "xyzenv-0009"', "xyzenv-0009", ['name: "SLACK_BOT_TOKEN"', 'value: "***"']),
    ("- name: SIGNING_KEY\n  value: envkey-0010", "envkey-0010", ["name: SIGNING_KEY", "value: "]),
    ('{"name": "DB_PASSWORD", "value": "jsonenv-0011"}', "jsonenv-0011", ['{"name": "DB_PASSWORD", "value": "***"}']),
    ('[{"name":"API_TOKEN","value":"jsonenv-0012"},{"name":"REPO","value":"a"}]', "jsonenv-0012",
     ['"name":"REPO","value":"a"']),
    ("- name: REPO_ALLOWLIST\n  value: compliance-service", "never-present", ["value: compliance-service"]),
    # PEM, JWT, prefixed tokens
    (_PEM, "MIIEowIBAAKCAQEAplanted1", ["key follows", "-----BEGIN RSA PRIVATE KEY-----", "after the key"]),
    (_PEM, "Qm9yaW5nIGJhc2U2NA==", ["-----END RSA PRIVATE KEY-----"]),
    (_PEM_ENCRYPTED, "MIIFHzBJBgkqplanted2", ["-----END ENCRYPTED PRIVATE KEY-----"]),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktplanted3", "b3BlbnNzaC1rZXktplanted3", ["OPENSSH"]),
    ("-----BEGIN CERTIFICATE-----\nMIIBcertbody\n-----END CERTIFICATE-----", "never-present", ["MIIBcertbody"]),
    (f"jwt {_JWT} end", "c2lnbmF0dXJlcGxhbnRlZA", ["jwt ", " end"]),
    (f"id_token={_JWT}&state=ok", "eyJzdWIiOiJkcmlsbCJ9", ["id_token=", "&state=ok"]),
    ("slack xoxb-1234567890-0987654321-AbCdEfGhIjKl sent", "xoxb-1234567890-0987654321-AbCdEfGhIjKl", ["slack ", " sent"]),
    ("user token xoxp-11-22-33-plantedslack", "xoxp-11-22-33-plantedslack", ["user token "]),
    ("push with ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789", ["push with"]),
    ("github_pat_11ABCDEFG0123456789_abcdefghijklmnop rest", "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
     [" rest"]),
    # URLs: signed queries and passwords
    ("https://b.s3.amazonaws.com/o?X-Amz-Algorithm=AWS4&X-Amz-Signature=abcdef0123456789&X-Amz-Expires=60",
     "abcdef0123456789", ["X-Amz-Algorithm=AWS4", "X-Amz-Signature=", "&X-Amz-Expires=60"]),
    ("https://a.blob.core.windows.net/c/b?sv=2020-08-04&sig=AzureSig%2Fplanted%3D&se=2026", "AzureSig%2Fplanted%3D",
     ["sv=2020-08-04", "&se=2026"]),
    ("https://h/download?token=urltoken-0013&file=a.tar", "urltoken-0013", ["&file=a.tar", "token="]),
    ("https://s.example/x?X-Goog-Signature=goog0014", "goog0014", ["X-Goog-Signature="]),
    ("https://d.cloudfront.net/x?Policy=cfpol0015&Signature=cfsig0016", "cfsig0016", ["https://d.cloudfront.net/x?"]),
    ("postgresql://drill:dsnpw-0017@127.0.0.1:5432/taskdb", "dsnpw-0017", ["@127.0.0.1:5432/taskdb"]),
    ("host=h user=u password=kvpw-0018 dbname=d", "kvpw-0018", ["host=h user=u", "dbname=d"]),
    # HTTP headers
    ("Authorization: Bearer bearer-0019\nAccept: */*", "bearer-0019", ["Authorization: Bearer ", "Accept: */*"]),
    ("curl -H 'X-Api-Key: hdrkey-0020' https://api", "hdrkey-0020", ["curl -H 'X-Api-Key: ", "' https://api"]),
    ("x-api-key: lower-0021", "lower-0021", ["x-api-key: "]),
    ("Cookie: session=cookie-0022; theme=dark\nHost: h", "cookie-0022", ["Cookie: ", "Host: h"]),
    ("Set-Cookie: sid=cookie-0023; Path=/; HttpOnly\nVary: x", "cookie-0023", ["Set-Cookie: ", "Vary: x"]),
    ("X-Auth-Token: hdrtok-0024", "hdrtok-0024", ["X-Auth-Token: "]),
    # flags, env and JSON
    ("kubectl --token kubetok-0025 get pods", "kubetok-0025", ["kubectl --token ", " get pods"]),
    ("kubectl --token=kubetok-0026 get pods", "kubetok-0026", [" get pods"]),
    ("PGPASSWORD=pgpw-0027 psql -h h", "pgpw-0027", [" psql -h h"]),
    ('{"apiKey": "jsonkey-0028", "region": "eu"}', "jsonkey-0028", ['"apiKey": "***"', '"region": "eu"']),
    ('{"client-key-data": "jsonkd-0029"}', "jsonkd-0029", ['"client-key-data": "***"']),
    ("routing_key=rk-0030 severity=critical", "rk-0030", ["severity=critical"]),
]  # fmt: skip

# Keys that merely mention a secret word keep their values.
KEPT = [
    "password_policy: strict",
    "token_ttl: 3600",
    "tokens_used: 12",
    "max_tokens: 100",
    "secret_env: SLACK_SECRET",
    "secretName: drill-tls",
    "client-certificate-data: LS0tLS1CRUdJTg==",
    "certificate-authority-data: LS0tLS1CRUdJTg==",
    "aws_access_key_id: AKIAIOSFODNN7EXAMPLE",
    "- name: REPO_ALLOWLIST\n  value: compliance-service",
    'Expected: enabled: false, reason: "Restricted to pilot scope"',
    "secret:\n  secretName: drill-tls",
    "https://api.example/v1/flows?repo=a&page=2",
    "the design signature was reviewed",
    "--password-file /run/secrets/pw",
]


def test_there_are_at_least_forty_planted_shapes():
    assert len(SHAPES) >= 40


@pytest.mark.parametrize(("text", "secret", "kept"), SHAPES)
def test_every_shape_of_secret_is_masked_and_its_surroundings_kept(redactor, text, secret, kept):
    out = redactor.redact_text(text)
    assert secret not in out
    for part in kept:
        assert part in out, (part, out)
    assert redactor.redact_text(out) == out  # idempotent


@pytest.mark.parametrize("text", KEPT)
def test_keys_that_only_mention_a_secret_word_are_not_masked(redactor, text):
    assert redactor.redact_text(text) == text


def test_a_kubernetes_env_entry_in_a_structure_is_masked_by_its_name(redactor):
    env = [{"name": "DB_PASSWORD", "value": "pw-in-struct"}, {"name": "REPO_ALLOWLIST", "value": "a,b"}]
    assert redactor.redact({"env": env}) == {
        "env": [{"name": "DB_PASSWORD", "value": MASK}, {"name": "REPO_ALLOWLIST", "value": "a,b"}]
    }
    assert redactor.redact({"client-key-data": "k", "client-certificate-data": "c"}) == {
        "client-key-data": MASK,
        "client-certificate-data": "c",
    }


@pytest.mark.parametrize(
    "hostile",
    [
        "a" * 1_000_000,
        "password" * 125_000,
        "password: " + "x " * 500_000,
        "-----BEGIN " + "A " * 500_000,
        "-----BEGIN RSA PRIVATE KEY-----" + "-" * 1_000_000,
        "eyJ" + "a" * 999_997,
        "eyJa.eyJ" + "b" * 999_992,
        "- name: DB_PASSWORD\n" * 50_000,
        '{"name": "X_TOKEN", "value": "' + "\\" * 1_000_000,
        "https://h/?" + "sig=" * 250_000,
        "postgresql://u:" + "p" * 1_000_000,
        "Cookie: " + "a=b; " * 200_000,
        "--token " * 125_000,
        "xoxb-" + "-" * 1_000_000,
    ],
    ids=lambda text: text[:12],
)
def test_a_megabyte_of_hostile_text_is_redacted_in_one_pass(redactor, hostile):
    # No timing is asserted: a catastrophic pattern would not finish at all on this input.
    out = redactor.redact_text(hostile)
    assert isinstance(out, str)
