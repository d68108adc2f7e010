"""JSON Schemas of the flywheel's record types, one file each, and the validation used where records are made."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator, FormatChecker


@cache
def schema(name: str) -> dict[str, Any]:
    """The schema `<name>.schema.json` shipped in this package."""
    text = resources.files(__package__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schema(name), format_checker=FormatChecker())


@cache
def _compiled(name: str):
    """A compiled validator for the common case: valid records are checked at C-like speed. Our schemas use only
    keywords that draft 7 and draft 2020-12 read the same way."""
    return fastjsonschema.compile({**schema(name), "$schema": "http://json-schema.org/draft-07/schema#"})


def validation_errors(name: str, record: Any) -> list[str]:
    """Every way `record` breaks schema `name`, as 'field: reason' strings (empty when valid)."""
    try:
        _compiled(name)(record)
        return []
    except fastjsonschema.JsonSchemaException:
        pass  # explain it fully with the reference validator
    errors = sorted(validator(name).iter_errors(record), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(record)'}: {e.message}" for e in errors]
