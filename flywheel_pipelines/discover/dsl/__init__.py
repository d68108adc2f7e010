"""Step 2 DSLs: formats an LLM reads and writes reliably (API design tables, PlantUML domain models, user stories).

Each DSL module offers `render(model) -> str`, `parse(text) -> model` (raising `DslSyntaxError`), and
`validate(text) -> list[DslError]`; the parsed model is plain JSON data matching the DSL's schema file, and
`parse(render(model)) == model`. Errors are precise (where, which field, why) so a teacher model can be asked to fix
exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DslError:
    """One precise problem: where (`row 3`, `class Order`, `AC2`, `line 5`), which field, and why."""

    location: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.location}, {self.field}: {self.reason}"


class DslSyntaxError(ValueError):
    """Text that is not the DSL at all; carries every error found."""

    def __init__(self, errors: list[DslError]):
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))
