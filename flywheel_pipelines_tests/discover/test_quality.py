"""Step 2 quality filters: trivial, broken, overly complex or too long units and tests that test nothing are
dropped, each with its reason."""

from flywheel_pipelines.discover.code_units import extract_code_units
from flywheel_pipelines.discover.python_units import extract_python_units
from flywheel_pipelines.discover.quality import QualityPolicy, cyclomatic_complexity, filter_units
from flywheel_pipelines_tests.conftest import SAMPLES

CODE = """
class Account:
    def __init__(self, owner):
        self.owner = owner

    @property
    def name(self):
        return self._name

    def get_owner(self):
        return self.owner

    def set_owner(self, owner):
        self.owner = owner

    def todo(self):
        pass

    def delegate(self):
        return self.owner.upper()

    def close(self, reason: str) -> None:
        if not reason:
            raise ValueError("reason needed")
        self.closed = True

def test_prints_only():
    print("checking")
    print(Account("a"))

def test_no_assertion():
    account = Account("a")
    account.close("done")

def test_real():
    account = Account("a")
    account.close("done")
    assert account.closed
"""


def reasons() -> dict[str, str | None]:
    units, _ = extract_python_units(CODE, "bank", "bank/test_account.py", "0" * 64)
    result = filter_units(units)
    out: dict[str, str | None] = {u["qualified_name"]: None for u in result.kept}
    out.update({u["qualified_name"]: reason for u, reason in result.rejected})
    return out


def test_trivial_units_are_dropped_with_their_reason():
    r = reasons()
    assert r["Account.todo"] == "trivial: empty or pass-only body"
    assert r["Account.get_owner"] == "trivial: plain getter or setter"
    assert r["Account.set_owner"] == "trivial: plain getter or setter"
    assert r["Account.name"] == "trivial: plain getter or setter"  # a @property that only returns a field
    assert r["Account.delegate"] == "too short: 1 body lines < 2"
    assert r["Account.close"] is None and r["Account"] is None


def test_tests_that_cannot_fail_are_dropped():
    r = reasons()
    assert r["test_prints_only"] == "test smell: only prints"
    assert r["test_no_assertion"] == "test smell: no assertion"
    assert r["test_real"] is None


def test_complexity_and_token_bounds_are_configurable_and_counted_by_reason():
    units, _ = extract_python_units(CODE, "bank", "bank/account.py", "0" * 64)
    close = next(u for u in units if u["name"] == "close")
    assert cyclomatic_complexity(close) == 2
    strict = filter_units([close], QualityPolicy(max_complexity=1))
    assert strict.rejected[0][1] == "too complex: cyclomatic complexity 2 > 1"
    words = filter_units([close], QualityPolicy(max_tokens=5), count_tokens=lambda text: len(text.split()))
    assert words.rejected[0][1].startswith("too many tokens:")
    assert filter_units(units).counts_by_reason["trivial"] == 4


def test_a_python_unit_whose_body_no_longer_parses_is_dropped():
    units, _ = extract_python_units(CODE, "bank", "bank/account.py", "0" * 64)
    broken = dict(next(u for u in units if u["name"] == "close"), body='if not reason:\n    raise ValueError("<SECRET')
    assert filter_units([broken]).rejected[0][1].startswith("syntax error:")


def test_the_samples_keep_their_substantial_units_in_every_language():
    files = [
        {
            "source": "samples",
            "path": p.relative_to(SAMPLES).as_posix(),
            "text": p.read_text(),
            "sha256": "0" * 64,
            "language": {
                ".py": "python",
                ".java": "java",
                ".kt": "kotlin",
                ".ts": "typescript",
                ".js": "javascript",
                ".go": "go",
            }[p.suffix],
        }
        for p in sorted(SAMPLES.rglob("*"))
        if p.suffix in (".py", ".java", ".kt", ".ts", ".js", ".go")
    ]
    result = filter_units(extract_code_units(files).units)
    kept = {u["language"] for u in result.kept}
    assert kept == {"python", "java", "kotlin", "typescript", "javascript", "go"}
    assert "OrderService.place_order" in {u["qualified_name"] for u in result.kept}
