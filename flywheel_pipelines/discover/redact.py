"""Desensitise text before it becomes training data: secrets and personal data become typed placeholders.

An early LoRA adapter reproduced half of its training source verbatim, so whatever reaches a training set may come
back out of the model. `redact` replaces every secret with `<SECRET:type>` and every piece of personal data with
`<EMAIL>`, `<PHONE>`, `<IP>`, `<HOST>` or `<NAME>`, and counts what it replaced:

    >>> redact('password = "hunter2"  # ask ops@acme-robotics.io').text
    'password = "<SECRET:password>"  # ask <EMAIL>'

How it works. `DETECTORS` below is the one table of everything that is looked for, in priority order. Each detector
has a cheap trigger: a regex run once over the whole text whose hits select the few lines (or, for multi-line
shapes, the text) that the detector examines at all; a repository with no "PRIVATE KEY" in it never pays for the
private-key search. Every detector yields character spans of the original text; a span is kept unless it overlaps
one already kept by an earlier detector or an existing placeholder, and the kept spans are replaced in one pass.
That makes the result deterministic (the table order decides every conflict) and idempotent (placeholders are
reserved, and no detector matches placeholder text), so `redact(redact(t).text).text == redact(t).text`.

Where the secrets come from. The maintained `detect-secrets` library (Yelp) provides the token shapes it knows:
AWS access keys and quoted secret keys, Slack, Stripe, GitHub, JWT, basic-auth URLs and several other vendors'
tokens (GitLab, OpenAI, PyPI, SendGrid, Square, Azure storage, Twilio, Mailchimp, npm). Its plugins are built once
inside `detect_secrets.settings.transient_settings`, so the library's global settings are restored afterwards, and
only their pure `analyze_string` is called on the pre-filtered lines; the values they report are located in the
line and, where its regexes stop early, extended over the rest of the token (detect-secrets 1.5 reports only the
`ghp` prefix of a GitHub token, a JWT without its signature and the first 24 characters of a Stripe key). Its JWT
validator, Shannon-entropy functions and false-positive heuristics (UUIDs, sequential strings, templates) vet our
own candidates. Our own regexes cover what it misses: whole private-key blocks (its PrivateKeyDetector flags only
the BEGIN line, so it is not used), GitHub fine-grained `github_pat_` tokens, Google API keys, unquoted AWS secret
keys, password values in code/YAML/JSON/.env/.properties/XML (its keyword plugin swallows trailing comments and
keeps only the first hit of a line), database and broker connection URLs, conservative key/secret/token
assignments, and all personal data.

Thresholds for `high_entropy_string` (a quoted or `.env`/YAML value assigned to a name with a segment such as
key, secret, token, credential, salt or auth): at least `min_secret_length` (20) characters, a digit and a letter,
not a UUID, sequential or templated string, path, URL, dotted name or `snake_case`-style identifier, and Shannon
entropy of at least `entropy_threshold` (3.7 bits per character; a random 20-character base64 token has a median of
4.0, a 38-character CamelCase identifier 4.2 but no digit) or, for hex-only values, `hex_entropy_threshold` (3.0,
detect-secrets' default; a random 32-digit hex string has a median of 3.6).

Personal data: e-mail addresses, except those at documentation domains (example.com/.org/.net and the reserved
`.test`, `.example`, `.invalid`, `.localhost` names) unless the domain is a configured internal one; phone numbers
with a `+country` prefix and separators (without separators only after `tel:` or a phone-like key),
North-American `(202) 555-0143` / `202-555-0143`, or trunk-prefixed national numbers `020 7946 0958` (9-15 digits;
bare digit runs, number lists, dates, times and versions are left alone); IPv4/IPv6
addresses validated with `ipaddress`, except loopback, unspecified, reserved/netmask, multicast, link-local and the
documentation ranges; host names under the policy's internal suffixes; and the policy's person names (whole word,
case-sensitive).

Limits: detection is pattern- and heuristic-based, so unusual secret shapes pass: a password in a variable not
named like one, a low-entropy API key, a value on the line after its key, a token split over concatenated string
literals. A bare name assigned in code to a password-named variable (`DB_PASSWORD = hunter2`) reads like a .env
line and is replaced; `redact_python_keeps_syntax` tells the caller when a Python file no longer parses, so it can
be quarantined. Speed: about 0.25 s per MB of Python source on one core (the whole 31 MB standard library in ~13 s).
"""

from __future__ import annotations

import ast
import ipaddress
import re
import threading
from bisect import bisect_right, insort
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from detect_secrets.filters.heuristic import (
    is_potential_uuid,
    is_prefixed_with_dollar_sign,
    is_sequential_string,
    is_templated_secret,
)
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.settings import get_plugins, transient_settings

__all__ = [
    "DETECTORS",
    "PLACEHOLDER",
    "Detector",
    "Redaction",
    "RedactionPolicy",
    "redact",
    "redact_python_keeps_syntax",
]

# Every placeholder this module writes; existing ones are reserved so a second pass never touches them.
PLACEHOLDER = re.compile(r"<(?:SECRET:[a-z0-9_]+|EMAIL|PHONE|IP|HOST|NAME)>")


@dataclass(frozen=True)
class RedactionPolicy:
    """What counts as sensitive beyond the built-in shapes, and how random a generic secret must look."""

    internal_host_suffixes: tuple[str, ...] = ()  # e.g. (".corp.example", ".internal"): host names become <HOST>
    person_names: tuple[str, ...] = ()  # e.g. ("Ada Lovelace",): whole-word, case-sensitive, become <NAME>
    entropy_threshold: float = 3.7  # bits per character, base64-alphabet values (see the module docstring)
    min_secret_length: int = 20  # shorter values assigned to key/secret/token names are not judged random
    hex_entropy_threshold: float = 3.0  # bits per character for hex-only values (detect-secrets' default)


@dataclass
class Redaction:
    text: str
    counts: dict[str, int]  # by placeholder type, e.g. {"SECRET:aws_access_key": 1, "EMAIL": 2}


Span = tuple[int, int]
Finder = Callable[[str, RedactionPolicy], Iterable[Span]]
# A trigger is searched in the text with ASCII letters lower-cased (one `str.translate`, same offsets), so it is
# written in lower case and needs no re.IGNORECASE, which would make it several times slower.
Trigger = re.Pattern[str] | Callable[[RedactionPolicy], re.Pattern[str] | None]
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class Detector:
    """One row of the detector table: what it replaces, where it comes from, and how it is found."""

    name: str  # the detector, e.g. "connection_string"
    kind: str  # the placeholder type it writes, e.g. "SECRET:password" -> "<SECRET:password>"
    source: str  # "detect-secrets:<Plugin>" or "own"
    trigger: Trigger  # cheap pre-filter over the lower-cased text (or built from the policy); None: skip
    find: Finder  # spans in the line (scope "line") or the whole text (scope "text")
    scope: Literal["line", "text"] = "line"


# --------------------------------------------------------------------------------------------------------------
# detect-secrets plugins: built once, inside transient_settings, so the library's global settings are untouched.

_DS_PLUGIN_CONFIG: list[dict[str, Any]] = [
    {"name": "AWSKeyDetector"},
    {"name": "BasicAuthDetector"},
    {"name": "GitHubTokenDetector"},
    {"name": "JwtTokenDetector"},
    {"name": "SlackDetector"},
    {"name": "StripeDetector"},
    {"name": "GitLabTokenDetector"},
    {"name": "OpenAIDetector"},
    {"name": "PypiTokenDetector"},
    {"name": "SendGridDetector"},
    {"name": "SquareOAuthDetector"},
    {"name": "AzureStorageKeyDetector"},
    {"name": "TwilioKeyDetector"},
    {"name": "MailchimpDetector"},
    {"name": "NpmDetector"},
    # Used for their entropy functions only (the limits are ours, from RedactionPolicy).
    {"name": "Base64HighEntropyString", "limit": 4.5},
    {"name": "HexHighEntropyString", "limit": 3.0},
]
_DS_LOCK = threading.Lock()
_DS_CACHE: dict[str, Any] = {}


def _ds(name: str) -> Any:
    """The detect-secrets plugin instance called `name` (a class name), built on first use."""
    if not _DS_CACHE:
        with _DS_LOCK:
            if not _DS_CACHE:
                # transient_settings swaps the library's process-wide settings and restores them on exit; the lock
                # keeps two threads from interleaving that swap. The instances' analyze_string reads no settings.
                with transient_settings({"plugins_used": _DS_PLUGIN_CONFIG}):
                    plugins = {type(p).__name__: p for p in get_plugins()}
                _DS_CACHE.update(plugins)
    return _DS_CACHE[name]


def _entropy(value: str) -> tuple[float, bool]:
    """Shannon entropy per character by detect-secrets' own functions, and whether the value is hex-only."""
    is_hex = bool(_HEX_ONLY.fullmatch(value))
    plugin = _ds("HexHighEntropyString" if is_hex else "Base64HighEntropyString")
    return plugin.calculate_shannon_entropy(value), is_hex


_HEX_ONLY = re.compile(r"[0-9a-fA-F]+")


def _ds_values(plugin: str, line: str) -> list[str]:
    # sorted: the plugins yield in set/regex order; sorting keeps the span order (and so conflicts) deterministic.
    return sorted({v for v in _ds(plugin).analyze_string(line) if v})


def _occurrences(line: str, value: str) -> Iterator[int]:
    start = line.find(value)
    while start >= 0:
        yield start
        start = line.find(value, start + 1)


def _ds_finder(
    plugin: str,
    *,
    accept: Callable[[str], bool] | None = None,
    extend: str = "",
    min_len: int = 1,
    keep_prefix: str = "",
) -> Finder:
    """Spans of the values a detect-secrets plugin reports in a line, optionally extended to the right.

    `extend` is a character class: some plugins' regexes stop early (GitHub's yields only the `ghp` prefix in
    detect-secrets 1.5, JWT's drops the signature, Stripe's stops at 24 characters), and the rest of the token
    is still secret. `keep_prefix` stays in the text (Azure's value starts with its key, "AccountKey=").
    """
    grow = re.compile(f"[{extend}]*") if extend else None

    def find(line: str, policy: RedactionPolicy) -> Iterator[Span]:
        for value in _ds_values(plugin, line):
            if accept is not None and not accept(value):
                continue
            for start in _occurrences(line, value):
                end = start + len(value)
                if grow is not None:
                    end = grow.match(line, end).end()  # type: ignore[union-attr]
                if keep_prefix and value.startswith(keep_prefix):
                    start += len(keep_prefix)
                if end - start >= min_len:
                    yield start, end

    return find


def _basic_auth(line: str, policy: RedactionPolicy) -> Iterator[Span]:
    # detect-secrets reports the password of `scheme://user:password@host`; only the copy between ':' and '@' is
    # replaced, so a short password does not take every equal substring of the line with it.
    for value in _ds_values("BasicAuthDetector", line):
        if _is_template(value):
            continue
        for start in _occurrences(line, value):
            end = start + len(value)
            if start and line[start - 1] == ":" and line[end : end + 1] == "@":
                yield start, end


def _is_aws_access_key(value: str) -> bool:
    return bool(_AWS_ACCESS_KEY.fullmatch(value))


_AWS_ACCESS_KEY = re.compile(r"(?:A3T[A-Z0-9]|ABIA|ACCA|AKIA|ASIA)[0-9A-Z]{16}")


def _jwt_valid(line: str, policy: RedactionPolicy) -> Iterator[Span]:
    # Our regex takes the whole token (header.payload.signature); detect-secrets' validator insists that header
    # and payload decode to JSON, which keeps dotted identifiers starting with "eyJ" out.
    for m in _JWT.finditer(line):
        if JwtTokenDetector.is_formally_valid(m.group()):
            yield m.span()


_JWT = re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_=-]+\.eyJ[A-Za-z0-9_=-]+(?:\.[A-Za-z0-9_+/=-]*)?")


# --------------------------------------------------------------------------------------------------------------
# Own regexes: shapes detect-secrets does not cover, or covers only partly.


def _regex_finder(
    pattern: re.Pattern[str], group: int | str = 0, check: Callable[[re.Match[str]], bool] | None = None
) -> Finder:
    """Spans of `group` of every match of `pattern` that passes `check`."""

    def find(text: str, policy: RedactionPolicy) -> Iterator[Span]:
        for m in pattern.finditer(text):
            if m.group(group) and (check is None or check(m)):
                yield m.span(group)

    return find


# A PEM/OpenSSH/PGP private key, BEGIN to END, across lines or inside strings with "\n" escapes. The body may hold
# only key material (base64, header lines, the quotes and escapes of a string literal) and must hold some, so two
# constants `BEGIN = "-----BEGIN PRIVATE KEY-----"` and `END = ...` in code do not take the code between them.
_PRIVATE_KEY_BLOCK = re.compile(
    r"-{4,5} ?BEGIN (?P<label>[A-Z0-9 ]*?PRIVATE KEY(?: BLOCK)?) ?-{4,5}"
    r"(?P<body>[A-Za-z0-9+/=\s\\\"',:().-]{0,20000}?)-{4,5} ?END (?P=label) ?-{4,5}"
)
# Without an END line (a truncated paste): the header and the base64 or header lines that follow it.
_PRIVATE_KEY_TRUNCATED = re.compile(
    r"-{4,5} ?BEGIN [A-Z0-9 ]*?PRIVATE KEY(?: BLOCK)? ?-{4,5}"
    r"(?:(?:(?:\r?\n|\\n)[ \t]*)+(?:[A-Za-z0-9+/=]{16,}|(?:Proc-Type|DEK-Info|Comment|Version|Hash): [^\n\\]*))+"
)
# A PuTTY key file: the header line through the Private-MAC line (detect-secrets flags only the first line).
_PUTTY_KEY = re.compile(r"PuTTY-User-Key-File-\d+: [^\n]*(?:\r?\n[^\n]*){0,80}?\r?\nPrivate-MAC: [^\n]*")


def _has_key_material(m: re.Match[str]) -> bool:
    return bool(re.search(r"[A-Za-z0-9+/]{16,}", m.group("body")))


_GITHUB_PAT = re.compile(r"(?<![\w])github_pat_[A-Za-z0-9_]{22,255}")
_GCP_API_KEY = re.compile(r"(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])")
# aws_secret_access_key: <40 chars> unquoted (YAML, .env, credentials files); detect-secrets requires quotes.
_AWS_SECRET_UNQUOTED = re.compile(
    r"(?i)aws[\w.-]{0,20}?(?:secret|key)[\w.-]{0,20}?[\"']?\s*[:=]\s*(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
)

# scheme://user:password@host for databases and brokers: the password goes, user and host stay.
_CONNECTION_STRING = re.compile(
    r"(?i)(?<![\w+.-])(?:postgres(?:ql)?|mysql|mariadb|mssql|sqlserver|oracle|cockroachdb|clickhouse|"
    r"mongodb(?:\+srv)?|redis|rediss|amqps?|rabbitmq|kafka|nats|ldaps?)(?:\+[a-z0-9_]+)?"
    r"://[^:@/\s'\"]*:(?P<value>[^@\s'\"/]+)@"
)


def _connection_password(m: re.Match[str]) -> bool:
    return not _is_template(m.group("value"))


# --- passwords -------------------------------------------------------------------------------------------------


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Names whose last word says they hold something other than the password itself (labels, policies, paths...).
_NOT_SECRET_SUFFIXES = _wordset(
    "field fields label prompt hint message msg text placeholder title help error errors policy length len "
    "min max regex pattern validator validators hasher hashers file path dir url uri env var name id type "
    "column attr param header reset changed expired required enabled prefix suffix size format fmt alg "
    "algorithm version count mode cls class"
)
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_PASSWORD_WORDS = frozenset({"password", "passwd", "passphrase", "contrasena", "kennwort"})
_SHORT_PASSWORD_WORDS = frozenset({"pass", "pwd", "pw"})  # only as the last word: db_pass, but not pass_stmt


def _key_words(key: str) -> list[str]:
    return [w.lower() for w in _WORDS.findall(key.rsplit(".", 1)[-1] if "." in key.strip(".") else key)]


def _is_password_key(key: str) -> bool:
    words = _key_words(key)
    if not words or words[-1] in _NOT_SECRET_SUFFIXES:
        return False
    # "dbpassword" and "PGPASSWORD" are one word; "pass" and "pwd" count only as words of their own ("bypass" not).
    # Among the last two words: db_password, password_hash, but not password_reset_timeout.
    if words[-1] in _SHORT_PASSWORD_WORDS:
        return True
    return any(w in _PASSWORD_WORDS or w.endswith(("password", "passwd")) for w in words[-2:])


_KEY = r"(?P<key>[A-Za-z_$@][\w.$@-]*)"
_QUOTED_VALUE = r"[bBrRuUfF]{0,2}(?:\"(?P<v1>[^\"\n]*)\"|'(?P<v2>[^'\n]*)'|`(?P<v3>[^`\n]*)`)"
# key = "value", key: 'value', "key": "value", key := "value", key => "value", key: str = "value", key == "value"
_QUOTED_ASSIGNMENT = re.compile(
    rf"(?<![\w.$@-])[\"']?{_KEY}[\"']?\]?\s*(?::\s*[\w\[\]., |]{{1,60}}?\s*(?==))?"  # the key, a type annotation
    rf"(?:===?|!==?|:=|=>|=|:)\s*{_QUOTED_VALUE}"
)
# A whole line `key = value` / `key: value` / `export KEY=value` (YAML, .env, .properties, .ini), comment allowed.
_UNQUOTED_LINE = re.compile(
    rf"^\s*(?:-\s+)?(?:export\s+|set\s+)?[\"']?{_KEY}[\"']?\s*(?:=|:)[ \t]*(?P<value>[^\s\"'`,;(){{}}\[\]<>]+)"
    r"[ \t]*(?:[ \t][#;].*|//.*)?$"
)
# key=value inside a query string, an ADO/JDBC connection string or a shell command: ...;Password=x;...
_INLINE_PAIR = re.compile(rf"(?:(?<=[;?&\s-])|^){_KEY}=(?P<value>[^;&\s\"'`#<>(){{}}\[\],]+)(?=[;&\s\"'`]|$)")
_XML_ELEMENT = re.compile(r"<(?P<key>[\w.:-]+)>(?P<value>[^<\n]+)</(?P=key)>")
_PASSWORD_TRIGGER = re.compile(r"pass|pwd|pw\b|contrase|kennwort")  # on lower-cased text, like every trigger

_NOT_A_VALUE = _wordset(
    "none null nil true false undefined empty str string bytes int any optional secretstr secretbytes required ~"
)
_DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")


_FORMAT_FIELD = re.compile(r"%\(\w+\)[sdr]|%[sdr]|\{\d*\}")


def _is_template(value: str) -> bool:
    """A reference to a secret rather than the secret: ${X}, $X, {x}, {{ x }}, <x>, %(x)s, %s, ****."""
    return (
        is_templated_secret(value)
        or is_prefixed_with_dollar_sign(value)
        or "{{" in value
        or bool(_FORMAT_FIELD.search(value))
        or value == "?"
        or not any(c.isalnum() for c in value)
        or bool(PLACEHOLDER.search(value))
    )


def _plausible_password(key: str, value: str, quoted: bool) -> bool:
    value = value.strip()
    if not value or _is_template(value) or value.lower() in _NOT_A_VALUE:
        return False
    if key.upper().endswith("PWD") and value.startswith(("/", "~")):
        return False  # $PWD and $OLDPWD are the shell's working directories
    if quoted:
        return len(value.split()) < 3  # "Enter your password" is prose, not a password
    # Unquoted values are also code: `password = self.password`, `password = new_password`.
    if _DOTTED_NAME.fullmatch(value):
        return False
    return not (re.fullmatch(r"[a-z_][a-z0-9_]*", value) and _PASSWORD_TRIGGER.search(value))


def _quoted_value_span(m: re.Match[str]) -> Span:
    for g in ("v1", "v2", "v3"):
        if m.group(g) is not None:
            return m.span(g)
    raise AssertionError("one of the alternatives matched")


_TUPLE_TARGET = re.compile(r"\s*(?:[\w.]+\s*,\s*)+$")
_STRING_PREFIX = re.compile(r"[bBrRuUfF]{1,2}")


def _assignment_spans(
    line: str, key_ok: Callable[[str], bool], value_ok: Callable[[str, str, bool], bool]
) -> Iterator[Span]:
    """Value spans of `key = "value"`-style assignments in a line whose key and value pass the checks."""
    for m in _QUOTED_ASSIGNMENT.finditer(line):
        if _TUPLE_TARGET.match(line, 0, m.start()):
            continue  # `user, password = "wile", "coyote"`: the first value is not the password's
        start, end = _quoted_value_span(m)
        if key_ok(m.group("key")) and value_ok(m.group("key"), line[start:end], True):
            yield start, end
    for pattern in (_UNQUOTED_LINE, _INLINE_PAIR, _XML_ELEMENT):
        for m in pattern.finditer(line):
            if (
                pattern is _INLINE_PAIR
                and _STRING_PREFIX.fullmatch(m.group("value"))
                and line[m.end() : m.end() + 1] in "\"'"
            ):
                continue  # f(password=b"..."): the quoted form above has it
            if key_ok(m.group("key")) and value_ok(m.group("key"), m.group("value"), False):
                yield m.span("value")


def _password(line: str, policy: RedactionPolicy) -> Iterator[Span]:
    return _assignment_spans(line, _is_password_key, _plausible_password)


# --- generic key/secret/token assignments ----------------------------------------------------------------------

_SECRET_WORDS = _wordset(
    "secret secrets token tokens credential credentials creds key keys apikey salt auth signature passphrase "
    "cert private"
)
_SECRET_TRIGGER = re.compile(r"secret|token|cred|key|salt|auth|signature|passphrase|cert|private")


def _is_identifier_like(value: str) -> bool:
    """user_profile_cache_v2 or CACHE-KEY-2024: words joined by separators, where random tokens have long mixed runs."""
    parts = re.split(r"[_.\-]", value)
    return len(parts) >= 2 and all(_WORDISH.fullmatch(p) for p in parts)


_WORDISH = re.compile(r"[A-Za-z]+\d{0,3}|\d+|\w{0,4}")  # user, v2, sha256, 2024, ab1c


_RANDOM_ALPHABET = re.compile(r"[A-Za-z0-9+/=_\-.~]+")


def _is_secret_key(key: str) -> bool:
    words = _key_words(key)
    if not words or words[-1] in _NOT_SECRET_SUFFIXES:
        return False
    return any(w in _SECRET_WORDS or w.endswith(("secret", "token", "apikey")) for w in words)


def _looks_random(value: str, policy: RedactionPolicy) -> bool:
    if len(value) < policy.min_secret_length or not _RANDOM_ALPHABET.fullmatch(value):
        return False
    if not (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)):
        return False  # real keys mix digits and letters; long words and CamelCase names do not
    if is_potential_uuid(value) or is_sequential_string(value) or _is_identifier_like(value):
        return False
    if value.startswith(("/", "./", "../", "~")) or "://" in value:
        return False  # paths and URLs
    if (
        "." in value
        and not re.search(r"[+/=]", value)
        and all(re.fullmatch(r"[A-Za-z_][\w-]*", p) for p in value.split("."))
    ):
        return False  # dotted module, package or host names
    entropy, is_hex = _entropy(value)
    return entropy >= (policy.hex_entropy_threshold if is_hex else policy.entropy_threshold)


def _high_entropy(line: str, policy: RedactionPolicy) -> Iterator[Span]:
    return _assignment_spans(line, _is_secret_key, lambda key, value, quoted: _looks_random(value, policy))


# --- personal data ---------------------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+/-])(?P<local>[A-Za-z0-9][A-Za-z0-9._%+-]{0,63})@"
    r"(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24})(?![\w-])"
)
_DOC_EMAIL_DOMAINS = ("example.com", "example.org", "example.net")
_RESERVED_TLDS = frozenset({"test", "example", "invalid", "localhost"})
# icon@2x.png and similar asset names look like addresses; no real TLD is one of these.
_ASSET_TLDS = frozenset(
    {"png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "css", "js", "json", "html", "htm", "xml", "txt"}
)


def _is_internal(domain: str, policy: RedactionPolicy) -> bool:
    d = "." + domain.lower()
    return any(d.endswith(s) or d == s for s in _normalised_suffixes(policy.internal_host_suffixes))


def _emails(text: str, policy: RedactionPolicy) -> Iterator[Span]:
    for m in _EMAIL.finditer(text):
        domain = m.group("domain").lower()
        tld = domain.rsplit(".", 1)[-1]
        if tld in _ASSET_TLDS or m.group("local") == "git":  # git@github.com:org/repo is an SSH remote
            continue
        documented = tld in _RESERVED_TLDS or any(domain == d or domain.endswith("." + d) for d in _DOC_EMAIL_DOMAINS)
        if documented and not _is_internal(domain, policy):
            continue
        yield m.span()


_PHONE = re.compile(
    r"""
    (?<![\w+/.\-])(?<!\d[ \-])                                              # not inside a word or a number list
    (?:
        (?P<intl>\+[1-9]\d{0,2}(?:[ .\-]?\(\d{1,4}\))?(?:[ .\-]\d{1,6}){1,5})  # +44 20 7946 0958, +1 (202) 555-0143
      | (?P<e164>\+[1-9]\d{7,14})                                            # tel:+4930123456789 (context checked)
      | \(\d{3}\)[ ]?\d{3}[ .\-]\d{4}                                          # (202) 555-0143
      | \d{3}(?P<sep>[.\- ])\d{3}(?P=sep)\d{4}                                 # 202-555-0143, 202.555.0143
      | (?P<national>0[1-9]\d{0,3}[ \-]\d{2,8}(?:[ \-]\d{2,8}){0,3})           # 020 7946 0958, 01 23 45 67 89
    )
    (?![\w]|[.\-/]\d|[ \-]\d)
    """,
    re.VERBOSE,
)


def _phones(text: str, policy: RedactionPolicy) -> Iterator[Span]:
    for m in _PHONE.finditer(text):
        digits = sum(c.isdigit() for c in m.group())
        if m.group("intl") and not 8 <= digits <= 15:
            continue
        if m.group("e164") and not _PHONE_CONTEXT.search(text, max(0, m.start() - 30), m.start()):
            continue  # without separators, only after tel: or a phone-ish key: +4294967296 in code is a number
        if m.group("national") and not _national_shape(m.group("national"), digits):
            continue
        yield m.span()


_PHONE_CONTEXT = re.compile(r"(?i)(?:tel|phone|mobile|cell|fax|sms|callto|whatsapp)[\w\"' ]*[:=]?\s*[\"']?$")


def _national_shape(number: str, digits: int) -> bool:
    """030-1234567, 020 7946 0958, 01 23 45 67 89 - but not 01-01-1980 00, 08-01-3697739 or 01 02 03 000004."""
    groups = re.split(r"[ \-]", number)
    if not 9 <= digits <= 12:
        return False
    if len(groups) == 2:
        return len(groups[1]) >= 6
    if len(groups) == 5 and all(len(g) == 2 for g in groups):
        return True  # the French layout
    return all(len(g) >= 3 for g in groups)


_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:]|\.\d)")
_DOC_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "0.0.0.0/8", "3fff::/20")
)
# `version 1.2.3.4`, `==1.2.3.4`: a four-part version number is a valid IPv4 address.
_VERSION_CONTEXT = re.compile(
    r"(?i)(?<![a-z])(?:version|release|ver|rev|v)[\W_]{0,8}$|(?:==|>=|<=|~=|!=|\^|~)\s*[\"']?$"
)


def _kept_ip(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Addresses that identify nothing: loopback, unspecified, reserved (netmasks), multicast, link-local, docs."""
    return (
        address.is_loopback
        or address.is_unspecified
        or address.is_reserved
        or address.is_multicast
        or address.is_link_local
        or any(address in net for net in _DOC_NETWORKS if net.version == address.version)
    )


def _ipv4(text: str, policy: RedactionPolicy) -> Iterator[Span]:
    for m in _IPV4.finditer(text):
        try:
            address = ipaddress.IPv4Address(m.group())
        except ValueError:
            continue  # 999.1.2.3, or a leading zero
        if not _kept_ip(address) and not _VERSION_CONTEXT.search(text, max(0, m.start() - 20), m.start()):
            yield m.span()


def _ipv6(text: str, policy: RedactionPolicy) -> Iterator[Span]:
    for m in _IPV6.finditer(text):
        candidate = m.group()
        # Needs three groups (fd00:1::2), so slices (x[1::2]) and C++/Rust paths (Abc::Def) stay.
        if sum(1 for part in re.split(r"[:.]", candidate) if part) < 3:
            continue
        try:
            address6 = ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        if address6.ipv4_mapped is not None and _kept_ip(address6.ipv4_mapped):
            continue
        if not _kept_ip(address6):
            yield m.span()


def _normalised_suffixes(suffixes: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted({"." + s.strip().strip(".").lower() for s in suffixes if s.strip().strip(".")}))


@lru_cache(maxsize=64)
def _host_regex(suffixes: tuple[str, ...]) -> re.Pattern[str] | None:
    normalised = _normalised_suffixes(suffixes)
    if not normalised:
        return None
    alternatives = "|".join(re.escape(s[1:]) for s in sorted(normalised, key=len, reverse=True))
    # At least one label before the suffix, and a bare multi-label suffix (corp.example) on its own.
    multi = "|".join(re.escape(s[1:]) for s in normalised if "." in s[1:])
    bare = rf"|(?:{multi})" if multi else ""
    return re.compile(
        rf"(?i)(?<![\w.-])(?:(?:[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?\.)+(?:{alternatives}){bare})(?![\w-]|\.[a-z0-9])"
    )


def _hosts(text: str, policy: RedactionPolicy) -> Iterator[Span]:
    pattern = _host_regex(policy.internal_host_suffixes)
    return (m.span() for m in pattern.finditer(text)) if pattern else iter(())


@lru_cache(maxsize=64)
def _host_trigger(policy: RedactionPolicy) -> re.Pattern[str] | None:
    normalised = _normalised_suffixes(policy.internal_host_suffixes)
    return re.compile("|".join(re.escape(s) for s in normalised)) if normalised else None


@lru_cache(maxsize=64)
def _name_regex(names: tuple[str, ...]) -> re.Pattern[str] | None:
    cleaned = sorted({n.strip() for n in names if n.strip()}, key=len, reverse=True)  # "Ada Lovelace" before "Ada"
    if not cleaned:
        return None
    # No leading look-behind: a pattern that starts with literals lets `re` skip ahead fast; words are checked below.
    return re.compile("|".join(r"\s+".join(map(re.escape, n.split())) for n in cleaned))


def _names(text: str, policy: RedactionPolicy) -> Iterator[Span]:
    pattern = _name_regex(policy.person_names)
    if pattern is None:
        return
    for m in pattern.finditer(text):
        start, end = m.span()
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        if not (before.isalnum() or before == "_" or after.isalnum() or after == "_"):
            yield start, end


@lru_cache(maxsize=64)
def _name_trigger(policy: RedactionPolicy) -> re.Pattern[str] | None:
    names = {n.strip().split()[0].lower() for n in policy.person_names if n.strip()}
    return re.compile("|".join(re.escape(n) for n in sorted(names))) if names else None


# --------------------------------------------------------------------------------------------------------------
# The table. Order is priority: an earlier detector's span wins over any overlapping later one, so the whole
# private-key block beats the base64 inside it, a specific token type beats "password" or "high entropy", and a
# connection string's password beats the e-mail-looking `password@host` around it.

_TOKEN = "A-Za-z0-9_\\-"  # a character-class body: base64url


def _t(lowercase_pattern: str) -> re.Pattern[str]:
    """A trigger: searched in the ASCII-lower-cased text, so written in lower case."""
    assert lowercase_pattern == lowercase_pattern.lower() or "\\" in lowercase_pattern, lowercase_pattern
    return re.compile(lowercase_pattern)


_URL_USERINFO = _t(r"://[^\s@/]*:[^\s@]*@")
DETECTORS: tuple[Detector, ...] = (
    Detector(
        "private_key",
        "SECRET:private_key",
        "own",
        _t(r"private key"),
        _regex_finder(_PRIVATE_KEY_BLOCK, check=_has_key_material),
        scope="text",
    ),
    Detector(
        "private_key_truncated",
        "SECRET:private_key",
        "own",
        _t(r"private key"),
        _regex_finder(_PRIVATE_KEY_TRUNCATED),
        scope="text",
    ),
    Detector(
        "putty_private_key",
        "SECRET:private_key",
        "own (detect-secrets:PrivateKeyDetector flags only the header)",
        _t(r"putty-user-key-file"),
        _regex_finder(_PUTTY_KEY),
        scope="text",
    ),
    Detector("jwt", "SECRET:jwt", "own + detect-secrets:JwtTokenDetector (validation)", _t(r"eyj"), _jwt_valid),
    Detector(
        "jwt_ds",
        "SECRET:jwt",
        "detect-secrets:JwtTokenDetector",
        _t(r"eyj"),
        _ds_finder("JwtTokenDetector", extend=_TOKEN + "+/=", min_len=20),
    ),
    Detector(
        "aws_access_key",
        "SECRET:aws_access_key",
        "detect-secrets:AWSKeyDetector",
        _t(r"a3t|abia|acca|akia|asia"),
        _ds_finder("AWSKeyDetector", accept=_is_aws_access_key),
    ),
    Detector(
        "aws_secret_key",
        "SECRET:aws_secret_key",
        "detect-secrets:AWSKeyDetector",
        _t(r"aws"),
        _ds_finder("AWSKeyDetector", accept=lambda v: not _is_aws_access_key(v)),
    ),
    Detector(
        "aws_secret_key_unquoted",
        "SECRET:aws_secret_key",
        "own",
        _t(r"aws"),
        _regex_finder(_AWS_SECRET_UNQUOTED, "value"),
    ),
    Detector("gcp_api_key", "SECRET:gcp_api_key", "own", _t(r"aiza"), _regex_finder(_GCP_API_KEY)),
    Detector(
        "github_token",
        "SECRET:github_token",
        "detect-secrets:GitHubTokenDetector",
        _t(r"gh[pousr]_"),
        _ds_finder("GitHubTokenDetector", extend="A-Za-z0-9_", min_len=40),
    ),
    Detector("github_fine_grained_token", "SECRET:github_token", "own", _t(r"github_pat_"), _regex_finder(_GITHUB_PAT)),
    Detector(
        "slack_token",
        "SECRET:slack_token",
        "detect-secrets:SlackDetector",
        _t(r"xox|hooks\.slack\.com"),
        _ds_finder("SlackDetector", extend="A-Za-z0-9-"),
    ),
    Detector(
        "stripe_key",
        "SECRET:stripe_key",
        "detect-secrets:StripeDetector",
        _t(r"k_live_"),
        _ds_finder("StripeDetector", extend="A-Za-z0-9"),
    ),
    # Other vendors' tokens detect-secrets knows; cheap triggers are their fixed prefixes.
    Detector(
        "gitlab_token",
        "SECRET:gitlab_token",
        "detect-secrets:GitLabTokenDetector",
        _t(r"gl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|agent|oas)-|gr1348941"),
        _ds_finder("GitLabTokenDetector", extend=_TOKEN),
    ),
    Detector(
        "openai_key",
        "SECRET:openai_key",
        "detect-secrets:OpenAIDetector",
        _t(r"t3blbkfj"),
        _ds_finder("OpenAIDetector"),
    ),
    Detector(
        "pypi_token",
        "SECRET:pypi_token",
        "detect-secrets:PypiTokenDetector",
        _t(r"pypi-age"),
        _ds_finder("PypiTokenDetector"),
    ),
    Detector(
        "sendgrid_key",
        "SECRET:sendgrid_key",
        "detect-secrets:SendGridDetector",
        _t(r"sg\."),
        _ds_finder("SendGridDetector"),
    ),
    Detector(
        "square_oauth_secret",
        "SECRET:square_oauth_secret",
        "detect-secrets:SquareOAuthDetector",
        _t(r"sq0csp-"),
        _ds_finder("SquareOAuthDetector"),
    ),
    Detector(
        "azure_storage_key",
        "SECRET:azure_storage_key",
        "detect-secrets:AzureStorageKeyDetector",
        _t(r"accountkey="),
        _ds_finder("AzureStorageKeyDetector", keep_prefix="AccountKey="),
    ),
    Detector(
        "twilio_key",
        "SECRET:twilio_key",
        "detect-secrets:TwilioKeyDetector",
        _t(r"(?:ac|sk)[a-z0-9]{32}"),
        _ds_finder("TwilioKeyDetector"),
    ),
    Detector(
        "mailchimp_key",
        "SECRET:mailchimp_key",
        "detect-secrets:MailchimpDetector",
        _t(r"-us\d"),
        _ds_finder("MailchimpDetector"),
    ),
    Detector(
        "npm_token",
        "SECRET:npm_token",
        "detect-secrets:NpmDetector",
        _t(r"_authtoken"),
        _ds_finder("NpmDetector", min_len=8),
    ),
    # Database and broker URLs: the placeholder names what was taken, the password ("user:<SECRET:password>@host").
    Detector(
        "connection_string",
        "SECRET:password",
        "own",
        _URL_USERINFO,
        _regex_finder(_CONNECTION_STRING, "value", _connection_password),
    ),
    Detector("basic_auth", "SECRET:basic_auth", "detect-secrets:BasicAuthDetector", _URL_USERINFO, _basic_auth),
    Detector("password", "SECRET:password", "own", _PASSWORD_TRIGGER, _password),
    Detector(
        "high_entropy_string",
        "SECRET:high_entropy_string",
        "own + detect-secrets entropy and heuristics",
        _SECRET_TRIGGER,
        _high_entropy,
    ),
    Detector("email", "EMAIL", "own", _t(r"@(?<=[\w.%+-]@)[a-z0-9]"), _emails),
    Detector("internal_host", "HOST", "own", _host_trigger, _hosts),
    Detector("ipv4", "IP", "own + ipaddress", _t(r"\.\d{1,3}\.\d{1,3}\.\d"), _ipv4),
    Detector("ipv6", "IP", "own + ipaddress", _t(r":[0-9a-f]{0,4}:[0-9a-f]"), _ipv6),
    Detector("phone", "PHONE", "own", _t(r"\+\d|\d[ .\-]\d{2,8}[ .\-]\d|\(\d{3}\)|0\d{1,4}[ \-]\d{5}"), _phones),
    Detector("person_name", "NAME", "own", _name_trigger, _names, scope="text"),
)


# --------------------------------------------------------------------------------------------------------------


class _Taken:
    """Non-overlapping spans kept so far, sorted, so each overlap check is a binary search."""

    def __init__(self, spans: Iterable[Span] = ()) -> None:
        self._spans: list[Span] = sorted(spans)

    def take(self, start: int, end: int) -> bool:
        i = bisect_right(self._spans, (start, float("inf")))
        if i and self._spans[i - 1][1] > start:
            return False
        if i < len(self._spans) and self._spans[i][0] < end:
            return False
        insort(self._spans, (start, end))
        return True


def _lines(text: str, lowered: str, trigger: re.Pattern[str]) -> Iterator[tuple[int, str]]:
    """(offset, line) of each line with a trigger hit, each line once: the pre-filter that keeps this fast."""
    pos = 0
    while True:
        m = trigger.search(lowered, pos)
        if m is None:
            return
        start = text.rfind("\n", 0, m.start()) + 1
        end = text.find("\n", m.start())
        end = len(text) if end < 0 else end
        yield start, text[start:end]
        pos = end + 1


def _spans(detector: Detector, text: str, lowered: str, policy: RedactionPolicy) -> list[Span]:
    trigger = detector.trigger if isinstance(detector.trigger, re.Pattern) else detector.trigger(policy)
    if trigger is None:
        return []
    if detector.scope == "text":
        found = list(detector.find(text, policy)) if trigger.search(lowered) else []
    else:
        found = [
            (offset + start, offset + end)
            for offset, line in _lines(text, lowered, trigger)
            for start, end in detector.find(line, policy)
        ]
    # Left to right, longest first where two start together: the same input always keeps the same spans.
    return sorted(set(found), key=lambda span: (span[0], -span[1]))


def _kept_spans(text: str, policy: RedactionPolicy) -> list[tuple[int, int, str]]:
    """(start, end, placeholder kind) of everything `redact` replaces, in text order."""
    taken = _Taken(m.span() for m in PLACEHOLDER.finditer(text))  # existing placeholders are never re-redacted
    lowered = text.translate(_ASCII_LOWER)
    kept: list[tuple[int, int, str]] = []
    for detector in DETECTORS:
        for start, end in _spans(detector, text, lowered, policy):
            if start < end and taken.take(start, end):
                kept.append((start, end, detector.kind))
    kept.sort()
    return kept


def redact(text: str, policy: RedactionPolicy = RedactionPolicy()) -> Redaction:
    """Replace secrets and personal data in `text` by typed placeholders, and count them by type."""
    kept = _kept_spans(text, policy)
    parts: list[str] = []
    pos = 0
    for start, end, kind in kept:
        parts.append(text[pos:start])
        parts.append(f"<{kind}>")
        pos = end
    parts.append(text[pos:])
    counts = Counter(kind for _, _, kind in kept)
    return Redaction("".join(parts), dict(sorted(counts.items())))


def secret_values(text: str, policy: RedactionPolicy = RedactionPolicy()) -> set[str]:
    """The secrets `redact` would replace in `text` (not personal data): what a model must never say back."""
    return {text[start:end] for start, end, kind in _kept_spans(text, policy) if kind.startswith("SECRET")}


def redact_python_keeps_syntax(original: str, redacted: str) -> str | None:
    """None when the redacted Python source still parses (or the original did not either), else why it does not.

    A placeholder replaces the inside of a string literal in nearly every case; one that lands where code was
    expected (say `password = get_it()` judged a literal) breaks the file, which the caller then quarantines.
    """
    try:
        ast.parse(redacted)
        return None
    except (SyntaxError, ValueError) as error:
        try:
            ast.parse(original)
        except (SyntaxError, ValueError):
            return None  # it was broken before we touched it
        line = getattr(error, "lineno", None)
        message = getattr(error, "msg", None) or str(error)
        return f"redaction broke the syntax: {message} at line {line}"
