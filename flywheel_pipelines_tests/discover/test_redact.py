"""Desensitisation: secrets and personal data leave the training text as typed placeholders, ordinary code stays."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
from detect_secrets.settings import get_settings

from flywheel_pipelines.discover.redact import (
    DETECTORS,
    PLACEHOLDER,
    RedactionPolicy,
    redact,
    redact_python_keeps_syntax,
)

PLANTED = Path(__file__).resolve().parents[2] / "data" / "samples" / "secrets"
STDLIB = Path(sysconfig.get_paths()["stdlib"])
SAMPLE_POLICY = RedactionPolicy(internal_host_suffixes=(".corp.example", ".internal"), person_names=("Alice Fakename",))

# Every value planted in data/samples/secrets (see its README), by the placeholder that must replace it.
PLANTED_VALUES = {
    "SECRET:aws_access_key": ["AKIAIOSFODNN7EXAMPLE"],
    "SECRET:aws_secret_key": ["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"],
    "SECRET:gcp_api_key": ["AIzaSyPLANTED-fake-GOOGLE-key0000000000"],
    "SECRET:github_token": [
        "ghp_PLANTEDfakeGITHUBtoken00000000000000",
        "github_pat_11PLANTEDFAKE000000000_PLANTEDfakeFINEgrainedGITHUBtokenDoNotUse000000000000000000",
    ],
    "SECRET:slack_token": [
        "xoxb-000000000000-0000000000000-PLANTEDfakeSLACKtoken0000",
        "PLANTEDfakeSLACKwebhook0",
    ],
    "SECRET:stripe_key": ["sk_live_PLANTEDfakeSTRIPEkey0000000000"],
    "SECRET:jwt": ["PLANTED-fake-SIGNATURE_not-a-real-one-000000", "eyJzdWIiOiJwbGFudGVkLWZha2UtdXNlciIsImlzcyI6"],
    "SECRET:private_key": [
        "BEGIN RSA PRIVATE KEY",
        "plantedFAKEkeyMATERIAL",
        "BEGIN OPENSSH PRIVATE KEY",
        "PLANTEDfakeOPENSSHkeyMATERIAL",
        "END OPENSSH PRIVATE KEY",
    ],
    "SECRET:password": [
        "planted-Passw0rd!",
        "planted-pg-secret",
        "planted-yaml-pass",
        "planted-yaml-pwd",
        "planted-yaml-passwd",
        "planted-mongo-secret",
        "planted-mysql-secret",
        "planted-redis-secret",
        "planted-amqp-secret",
        "planted-json-pass",
        "planted-env-pass",
        "planted-jdbc-pass",
        "planted-props-pass",
    ],
    "SECRET:basic_auth": ["planted-basic-secret"],
    "SECRET:high_entropy_string": ["PLANTED0fake9Zq7Xw2Lm5Rt8Vb3Nc6Kd1", "PLANTED1fake8Yp6Wv3Km4Qs7Ur2Mb5Jc0Ld9"],
    "SECRET:gitlab_token": ["glpat-PLANTEDfakeGITLAB000"],
    "SECRET:openai_key": ["sk-PLANTEDfakeOPENAI000T3BlbkFJPLANTEDfakeOPENAI000"],
    "SECRET:pypi_token": ["pypi-AgEIcHlwaS5vcmcPLANTEDfakePYPItoken"],
    "SECRET:sendgrid_key": ["SG.PLANTEDfakeSENDGRID000.PLANTEDfakeSENDGRIDsecretPart00000000000000"],
    "SECRET:square_oauth_secret": ["sq0csp-PLANTEDfakeSQUAREsecret00000000000000000000"],
    "SECRET:azure_storage_key": ["PLANTEDfakeAZUREstorageKey"],
    "SECRET:twilio_key": ["SKplantedfaketwilio000000000000000"],
    "SECRET:mailchimp_key": ["plantedfakemailchimp000000000000-us12"],
    "SECRET:npm_token": ["npm_PLANTEDfakeNPMtoken00000000000000000"],
    "EMAIL": ["alice.fakename@acme-robotics.io"],
    "PHONE": ["+1 202-555-0143", "020 7946 0958"],
    "IP": ["10.20.30.40", "10.20.30.41", "fd12:3456:789a::10"],
    "HOST": ["db.corp.example", "build-01.corp.example", "mysql.internal", "cache.internal", "rabbit.internal"],
    "NAME": ["Alice Fakename"],
}


def planted_repository() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(PLANTED.iterdir()) if p.suffix in {".py", ".yaml"}}


def test_a_repository_with_planted_secrets_of_every_supported_type_yields_text_with_none_of_them_left():
    repository = planted_repository()
    assert set(repository) == {"planted_config.py", "planted.env.yaml"}
    redacted = {name: redact(text, SAMPLE_POLICY) for name, text in repository.items()}
    everything_before = "\n".join(repository.values())
    everything_after = "\n".join(r.text for r in redacted.values())

    for kind, values in PLANTED_VALUES.items():
        for value in values:
            assert value in everything_before, f"the sample lost its planted {kind}: {value}"
            assert value not in everything_after, f"{kind} left in the text: {value}"

    found = {kind for r in redacted.values() for kind in r.counts}
    supported = {detector.kind for detector in DETECTORS}
    assert supported <= found, f"types with no planted example: {sorted(supported - found)}"
    assert set(PLANTED_VALUES) == supported
    for kind in supported:
        assert f"<{kind}>" in everything_after
    for r in redacted.values():  # the counts are the placeholders written
        assert sum(r.counts.values()) == len(PLACEHOLDER.findall(r.text))
    assert redact_python_keeps_syntax(repository["planted_config.py"], redacted["planted_config.py"].text) is None


def test_what_the_samples_mark_as_ordinary_survives_their_redaction():
    after = redact(planted_repository()["planted_config.py"], SAMPLE_POLICY).text
    for kept in ("127.0.0.1", "0.0.0.0", '"::1"', "192.0.2.10", "198.51.100.7", "203.0.113.99", "user@example.com"):
        assert kept in after
    for kept in (
        '"2.10.3"',
        '"2024-05-06"',
        "123e4567-e89b-12d3-a456-426614174000",
        "d41d8cd98f00b204e9800998ecf8427e",
    ):
        assert kept in after
    assert 'AWS_ACCESS_KEY_ID = "<SECRET:aws_access_key>"' in after  # the name stays, only the value goes


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('password = "hunter2"', 'password = "<SECRET:password>"'),
        ("DB_PASSWORD: str = 'hunter2'", "DB_PASSWORD: str = '<SECRET:password>'"),
        ('    "passwd": "hunter2",', '    "passwd": "<SECRET:password>",'),
        ("PASSWORD: hunter2", "PASSWORD: <SECRET:password>"),
        ("  - password: hunter2  # rotated weekly", "  - password: <SECRET:password>  # rotated weekly"),
        ("export PGPASSWORD=hunter2", "export PGPASSWORD=<SECRET:password>"),
        ("mail.smtp.password = hunter2", "mail.smtp.password = <SECRET:password>"),
        ('pwd: "hunter2"', 'pwd: "<SECRET:password>"'),
        ("Server=db;User Id=sa;Password=hunter2;", "Server=db;User Id=sa;Password=<SECRET:password>;"),
        ("<password>hunter2</password>", "<password><SECRET:password></password>"),
        ('connect(host, password="hunter2")', 'connect(host, password="<SECRET:password>")'),
    ],
)
def test_a_password_keeps_its_key_and_quotes(line: str, expected: str):
    result = redact(line)
    assert result.text == expected
    assert result.counts == {"SECRET:password": 1}


@pytest.mark.parametrize(
    "line",
    [
        "password = self.password",
        'password = request.form["password"]',
        "password: str",
        'password = "${DB_PASSWORD}"',
        'password = "{{ vault_db_password }}"',
        'PASSWORD_FIELD = "password"',
        'help_text = "Enter your password here"',
        "if not password:",
        'bypass = "abcdef"',
        'USER_PASSWD = "%s:%s" % (USER, PASSWD)',
    ],
)
def test_references_to_a_password_are_not_mistaken_for_one(line: str):
    assert redact(line).text == line


def test_a_private_key_block_disappears_whole():
    block = "\n".join(
        [
            "-----BEGIN EC PRIVATE KEY-----",
            "Proc-Type: 4,ENCRYPTED",
            "MHcCAQEEIPLANTEDfakeECkeyMATERIAL0000000000000000000000oAoGCCqGSM49",
            "AwEHoUQDQgAEPLANTEDfakeECkeyMATERIAL000000000000000000000000000000==",
            "-----END EC PRIVATE KEY-----",
        ]
    )
    result = redact(f"before\n{block}\nafter\n")
    assert result.text == "before\n<SECRET:private_key>\nafter\n"
    assert result.counts == {"SECRET:private_key": 1}

    escaped = (
        'KEY = "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7'
        '\\n-----END PRIVATE KEY-----\\n"'
    )
    assert redact(escaped).text == 'KEY = "<SECRET:private_key>\\n"'

    truncated = (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAplantedFAKEkeyMATERIAL00000000\nAAAAplantedFAKE000000000000\n"
        "\ndef f(): pass\n"
    )
    assert redact(truncated).text == "<SECRET:private_key>\n\ndef f(): pass\n"

    markers_in_code = 'BEGIN = "-----BEGIN PRIVATE KEY-----"\nEND = "-----END PRIVATE KEY-----"\n'
    assert redact(markers_in_code).text == markers_in_code


@pytest.mark.parametrize(
    "scheme",
    ["postgresql", "postgres", "postgresql+psycopg2", "mysql", "mongodb", "mongodb+srv", "redis", "amqp", "amqps"],
)
def test_connection_strings_keep_user_and_host(scheme: str):
    result = redact(f'url = "{scheme}://orders_app:s3cr3t-Value@db.acme-robotics.io:5432/orders"')
    assert result.text == f'url = "{scheme}://orders_app:<SECRET:password>@db.acme-robotics.io:5432/orders"'
    assert result.counts == {"SECRET:password": 1}


def test_basic_auth_in_a_url_keeps_user_and_host_and_templates_stay():
    result = redact("pip install --index-url https://deploy:t0ps3cret@pypi.acme-robotics.io/simple pkg")
    assert result.text == "pip install --index-url https://deploy:<SECRET:basic_auth>@pypi.acme-robotics.io/simple pkg"
    templated = 'url = f"postgresql://{user}:{password}@{host}/db"'
    assert redact(templated).text == templated


def test_127_0_0_1_and_documentation_ips_stay():
    kept = "127.0.0.1 0.0.0.0 ::1 192.0.2.1 198.51.100.200 203.0.113.7 2001:db8::10 255.255.255.0 version 1.2.3.4"
    assert redact(kept).text == kept
    result = redact("db at 10.1.2.3, proxy 172.16.5.4, api 2606:4700:4700::1111, scan 256.1.1.1")
    assert result.text == "db at <IP>, proxy <IP>, api <IP>, scan 256.1.1.1"
    assert result.counts == {"IP": 3}


def test_emails_are_replaced_except_at_documentation_domains():
    result = redact("ask jane.roe@acme-robotics.io, not user@example.com, bob@sub.example.org or qa@ci.test; @property")
    assert result.text == "ask <EMAIL>, not user@example.com, bob@sub.example.org or qa@ci.test; @property"
    internal = RedactionPolicy(internal_host_suffixes=(".corp.example",))
    assert redact("ops@mail.corp.example", internal).text == "<EMAIL>"


def test_phone_numbers_are_replaced_but_versions_dates_and_digit_runs_stay():
    result = redact("call +1 (202) 555-0143, +44 20 7946 0958, 202-555-0143 or 020 7946 0958")
    assert result.text == "call <PHONE>, <PHONE>, <PHONE> or <PHONE>"
    ordinary = "v1.2.3 2021-05-06 05-06-2021 12:30:45 1234567890 x = a + 12 [1, 2, 3] 0.5 01-01-1980 00:00"
    assert redact(ordinary).text == ordinary


@pytest.mark.parametrize("module", ["hashlib.py", "uuid.py", "json/decoder.py", "ipaddress.py", "base64.py"])
def test_ordinary_code_is_untouched(module: str):
    source = (STDLIB / module).read_text()
    result = redact(source)
    secrets = {kind: n for kind, n in result.counts.items() if kind.startswith("SECRET:")}
    assert secrets == {}
    assert redact_python_keeps_syntax(source, result.text) is None


def test_hash_tests_uuids_version_numbers_dates_and_prose_are_untouched():
    ordinary = "\n".join(
        [
            "def test_md5():",
            '    assert hashlib.md5(b"").hexdigest() == "d41d8cd98f00b204e9800998ecf8427e"',
            '    expected_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"',
            '    request_key = "123e4567-e89b-12d3-a456-426614174000"',
            '    cache_key = "user_profile_cache_v2_prefix"',
            '    token_name = "AnExtremelyLongCamelCaseIdentifierWithoutDigits"',
            '    __version__ = "2.10.3"; released = "2024-05-06"',
            '    secret_message = "the quick brown fox jumps over the lazy dog again and again"',
        ]
    )
    assert redact(ordinary).text == ordinary


def test_a_random_value_under_a_secret_name_is_replaced():
    result = redact('api_key = "Zx8Qm2Lp9Vt4Rk7Wn3Yb6Hc1Jd5Fg0Ps"\nCLIENT_SECRET=f3a9c27be8d14b6aa0c5e7d2b9f41c86\n')
    assert result.text == 'api_key = "<SECRET:high_entropy_string>"\nCLIENT_SECRET=<SECRET:high_entropy_string>\n'
    # The policy decides how random is random: a demanding threshold keeps the same text.
    strict = RedactionPolicy(entropy_threshold=6.0, hex_entropy_threshold=4.5)
    assert redact('api_key = "Zx8Qm2Lp9Vt4Rk7Wn3Yb6Hc1Jd5Fg0Ps"', strict).counts == {}


def test_redaction_is_idempotent_and_deterministic():
    texts = [*planted_repository().values(), (STDLIB / "smtplib.py").read_text()]
    for text in texts:
        once = redact(text, SAMPLE_POLICY)
        twice = redact(once.text, SAMPLE_POLICY)
        assert twice.text == once.text
        assert twice.counts == {}
        assert redact(text, SAMPLE_POLICY) == once
    assert redact(texts[2]).counts.get("EMAIL", 0) > 0  # smtplib credits its authors by address


def test_placeholders_are_never_re_redacted():
    text = 'password = "<SECRET:password>"  # owner <NAME> <EMAIL> at <HOST> (<IP>, <PHONE>)'
    assert PLACEHOLDER.findall(text)
    result = redact(text, RedactionPolicy(person_names=("NAME", "SECRET"), internal_host_suffixes=("HOST",)))
    assert result.text == text
    assert result.counts == {}


def test_internal_hosts_and_listed_names_are_replaced_when_configured():
    text = "Ada Lovelace deploys to build-7.corp.example and db.internal; Ada reviews; Adam and ada stay. corp.example"
    assert redact(text).text == text  # nothing is configured, so nothing is known to be internal or a name
    policy = RedactionPolicy(internal_host_suffixes=("corp.example", ".internal"), person_names=("Ada Lovelace", "Ada"))
    result = redact(text, policy)
    assert result.text == "<NAME> deploys to <HOST> and <HOST>; <NAME> reviews; Adam and ada stay. <HOST>"
    assert result.counts == {"HOST": 3, "NAME": 2}
    assert redact("see internal.docs and db.internalized.io", policy).counts == {}


def test_redaction_that_breaks_python_syntax_is_reported():
    original = "DB_PASSWORD = hunter2\n"  # a name in code, but it reads like a .env line
    redacted = redact(original).text
    assert redacted == "DB_PASSWORD = <SECRET:password>\n"
    reason = redact_python_keeps_syntax(original, redacted)
    assert reason is not None
    assert reason.startswith("redaction broke the syntax: ")
    assert reason.endswith("at line 1")
    assert redact_python_keeps_syntax('x = "<SECRET:password>"\n', 'x = "<SECRET:password>"\n') is None
    assert redact_python_keeps_syntax("def broken(:\n", "def broken(:\n") is None  # it never parsed


def test_detect_secrets_global_settings_are_left_as_they_were():
    before = get_settings().json()
    redact('aws = "AKIAIOSFODNN7EXAMPLE"; slack = "xoxb-000000000000-0000000000000-abcdefabcdef"')
    assert get_settings().json() == before
