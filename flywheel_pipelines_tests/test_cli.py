"""The `flywheel` command: importing feedback reports bad lines by number, and `where` shows the results."""

from pathlib import Path

import pytest

from flywheel_pipelines.cli import main
from flywheel_pipelines.deliver.feedback_store import FeedbackStore
from flywheel_pipelines.settings import Settings
from flywheel_pipelines_tests.conftest import SAMPLES, feedback_line


def test_importing_a_file_with_a_bad_line_imports_nothing_and_names_the_line(
    project: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = tmp_path / "events.jsonl"
    path.write_text(feedback_line("ok") + "\n" + '{"event_id": "x"}\n')
    assert main(["--config", str(project.source), "feedback", "import", str(path)]) == 1
    err = capsys.readouterr().err
    assert "line 2:" in err and "'kind' is a required property" in err and "--quarantine-invalid" in err
    assert FeedbackStore(project.feedback_database_url).events() == []

    assert main(["--config", str(project.source), "feedback", "import", str(path), "--quarantine-invalid"]) == 0
    captured = capsys.readouterr()
    assert "imported 1 events" in captured.out and "quarantined line 2" in captured.err


def test_the_sample_feedback_imports(project: Settings, capsys: pytest.CaptureFixture[str]):
    sample = SAMPLES / "feedback" / "sample_feedback.jsonl"
    assert main(["--config", str(project.source), "feedback", "import", str(sample)]) == 0
    assert "imported 3 events" in capsys.readouterr().out


def test_a_broken_config_is_reported_not_raised(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    bad = tmp_path / "flywheel.yaml"
    bad.write_text("sources: []\nbase_model: {name_or_path: m}\n")
    assert main(["--config", str(bad), "where"]) == 2
    assert "sources: List should have at least 1 item" in capsys.readouterr().err


def test_where_says_to_run_first_when_nothing_ran(project: Settings, capsys: pytest.CaptureFixture[str]):
    assert main(["--config", str(project.source), "where"]) == 0
    out = capsys.readouterr().out
    assert "make ui" in out and "make mlflow" in out and "No eval scores yet" in out
