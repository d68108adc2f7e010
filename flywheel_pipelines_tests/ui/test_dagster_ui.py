"""A data engineer opens the Dagster UI of a fresh project in a real (headless) chromium: the asset graph shows the
three stages, the retraining job, sensors and schedules are listed and can be switched, a materialisation launched
from the UI succeeds, and the asset pages show what it produced. A screenshot after each step is kept."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from flywheel_pipelines_tests.ui.conftest import DagsterUI

pytestmark = pytest.mark.ui

# A run goes through the queue, a run worker and a step process, each importing the flywheel: generous on 2 cores.
RUN_TIMEOUT_MS = 240_000
PAGE_TIMEOUT_MS = 60_000
FINISHED = re.compile(r"^(Success|Failure|Canceled)$")


class Screenshots:
    """Numbered full-page screenshots, one per step, in the artefacts folder."""

    def __init__(self, page: Page, folder: Path):
        self.page, self.folder, self.taken = page, folder, 0

    def take(self, name: str) -> Path:
        self.taken += 1
        path = self.folder / f"{self.taken:02d}-{name}.png"
        self.page.screenshot(path=path, full_page=True, animations="disabled")
        return path


def visible_text(page: Page, text: str | re.Pattern, exact: bool = True):
    return page.get_by_text(text, exact=exact).filter(visible=True).first


def button(page: Page, text: str):
    """A visible button by the text it shows (its accessible name starts with its icon's, if it has one)."""
    shown = re.compile(rf"^\s*{re.escape(text)}\s*$", re.IGNORECASE)
    return page.get_by_role("button").filter(has_text=shown).filter(visible=True).first


def skip_community_dialog(page: Page, shots: Screenshots) -> None:
    """A fresh instance greets the first visit with "Join the Dagster community"; skipping it is remembered."""
    skip = page.get_by_role("button", name="Skip", exact=True)
    try:
        skip.wait_for(state="visible", timeout=10_000)
    except Exception:  # not shown: nothing to dismiss
        return
    shots.take("community-dialog")
    skip.click()
    expect(skip).to_be_hidden()


def switch_in_row(page: Page, label: str):
    """The switch beside a details table's label ("Running" on a sensor's or schedule's page): (input, clickable)."""
    row = page.locator("tr", has=page.get_by_text(label, exact=True)).filter(visible=True).first
    # The input itself is hidden behind the drawn switch: a person clicks the label around both.
    return row.locator("input[type=checkbox]").first, row.locator("label:has(input[type=checkbox])").first


def toggle_running(page: Page, *, restore: bool) -> None:
    """Switch the sensor or schedule whose page is open off (it starts running: its default status), and back on
    when `restore`; each change is awaited (the switch is disabled while the server applies it) and the final state
    read again from the server by reloading the page."""

    def flip(to: bool) -> None:
        switch, clickable = switch_in_row(page, "Running")
        expect(switch).to_be_enabled(timeout=PAGE_TIMEOUT_MS)
        expect(switch).to_be_checked(checked=not to, timeout=PAGE_TIMEOUT_MS)
        clickable.click()
        expect(switch).to_be_enabled(timeout=PAGE_TIMEOUT_MS)
        expect(switch).to_be_checked(checked=to)

    flip(False)
    if restore:
        flip(True)
    page.reload()
    switch, _ = switch_in_row(page, "Running")
    expect(switch).to_be_checked(checked=restore, timeout=PAGE_TIMEOUT_MS)


def open_automation(page: Page, ui: DagsterUI, name: str) -> None:
    page.goto(f"{ui.url}/automation")
    visible_text(page, name).click()
    expect(page).to_have_url(re.compile(rf"/(sensors|schedules)/{name}\b"), timeout=PAGE_TIMEOUT_MS)
    expect(visible_text(page, "Running")).to_be_visible(timeout=PAGE_TIMEOUT_MS)


def wait_for_run(page: Page, run_url: str, expected: str = "Success") -> None:
    """The run page's status tag, once the run has finished."""
    if page.url != run_url:
        page.goto(run_url)
    status = visible_text(page, FINISHED)
    expect(status).to_be_visible(timeout=RUN_TIMEOUT_MS)
    assert status.inner_text() == expected, f"the run at {run_url} ended {status.inner_text()}, not {expected}"


def launch_from_launchpad(page: Page) -> str:
    launch = button(page, "Launch Run")
    expect(launch).to_be_enabled(timeout=PAGE_TIMEOUT_MS)
    launch.click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]+$"), timeout=PAGE_TIMEOUT_MS)
    return page.url


def set_run_config(page: Page, text: str) -> None:
    """Replace the launchpad's config as a person would: select all in the editor, paste."""
    page.locator(".CodeMirror").filter(visible=True).first.click()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.insert_text(text)


def check_metadata(page: Page, entries: dict[str, str | re.Pattern]) -> None:
    """Each label in the asset's Metadata section, with text of its value in the same row."""
    for label, value in entries.items():
        row = page.locator("tr", has=page.get_by_text(label, exact=True)).filter(visible=True).first
        expect(row).to_be_visible(timeout=PAGE_TIMEOUT_MS)
        expect(row).to_contain_text(value)


def see_the_three_stages(page: Page, ui: DagsterUI, shots: Screenshots) -> None:
    """The global asset lineage: the six steps' assets, grouped by stage."""
    page.goto(f"{ui.url}/asset-groups")
    skip_community_dialog(page, shots)
    for group in ("discover", "define", "deliver"):
        # A group's box carries its full name, however much of it the box shows.
        name = page.locator(f'[data-tooltip="{group}"]').filter(visible=True).first
        expect(name).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    shots.take("asset-graph")


def switch_off_the_discovery_sensor(page: Page, ui: DagsterUI, shots: Screenshots) -> None:
    """For good: it would start training as soon as the discover run below succeeds."""
    open_automation(page, ui, "discovery_sensor")
    toggle_running(page, restore=False)
    shots.take("discovery-sensor-off")


def launch_discover_for_shop(page: Page, ui: DagsterUI, shots: Screenshots) -> str:
    """The discover job for the `shop` source, from its launchpad: the partition picked, the run launched."""
    page.goto(f"{ui.url}/locations/{ui.location}/jobs/discover/playground")
    partition = page.get_by_placeholder("Partition")
    partition.click()
    partition.fill("shop")
    page.get_by_role("menuitem", name="shop").filter(visible=True).first.click()
    expect(partition).to_have_value("shop")
    shots.take("discover-launchpad")
    return launch_from_launchpad(page)


def materialize_base_model(page: Page, ui: DagsterUI, shots: Screenshots) -> str:
    """From the asset's page; the toast links to the run."""
    page.goto(f"{ui.url}/assets/base_model")
    expect(visible_text(page, "local transformers folder", exact=False)).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    button(page, "Materialize").click()
    view = page.get_by_role("link", name="View", exact=True).filter(visible=True).first
    expect(view).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    run_url = ui.url + view.get_attribute("href")
    shots.take("base-model-launched")
    return run_url


def see_the_jobs_sensors_and_schedules(page: Page, ui: DagsterUI, shots: Screenshots) -> None:
    """Listed, each with its switch; the feedback sensor and the nightly schedule switched off and on again."""
    page.goto(f"{ui.url}/automation")
    for name in ("feedback_sensor", "discovery_sensor", "sources_sensor", "nightly_retrain", "daily_feedback"):
        expect(visible_text(page, name)).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    shots.take("automation")
    for name in ("feedback_sensor", "nightly_retrain"):
        open_automation(page, ui, name)
        toggle_running(page, restore=True)
        shots.take(name.replace("_", "-"))
    page.goto(f"{ui.url}/jobs")
    for job in ("retrain", "discover", "train", "collect_feedback"):
        expect(visible_text(page, job)).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    shots.take("jobs")


def launch_train_with_one_training_step(page: Page, ui: DagsterUI, shots: Screenshots) -> None:
    """The train job with a training setting changed for this run only: the launchpad validates the config against
    the asset's config class, and the run carries it. The run waits in the queue behind the two above and is
    terminated there: training the whole graph is the integration tests' job."""
    page.goto(f"{ui.url}/locations/{ui.location}/jobs/train/playground")
    no_errors = visible_text(page, "No errors")
    set_run_config(page, "ops:\n  lora_adapter:\n    config:\n      max_steps: many\n")
    expect(no_errors).to_be_hidden(timeout=PAGE_TIMEOUT_MS)
    expect(button(page, "Launch Run")).to_be_disabled()
    shots.take("train-launchpad-invalid-config")
    set_run_config(page, "ops:\n  lora_adapter:\n    config:\n      max_steps: 1\n")
    expect(no_errors).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    shots.take("train-launchpad")
    run_url = launch_from_launchpad(page)
    button(page, "View tags and config").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(re.compile(r"max_steps:\s*1"), timeout=PAGE_TIMEOUT_MS)
    shots.take("train-run-config")
    button(page, "OK").click()
    expect(dialog).to_be_hidden()
    button(page, "Terminate").click()
    button(page, "Terminate 1 run").click()
    wait_for_run(page, run_url, expected="Canceled")
    if button(page, "Done").is_visible():  # the dialog stays open only for a run that had started
        button(page, "Done").click()
    shots.take("train-run-canceled")


def see_what_base_model_is(page: Page, ui: DagsterUI, shots: Screenshots) -> None:
    page.goto(f"{ui.url}/assets/base_model")
    check_metadata(page, {"architecture": "LlamaForCausalLM", "parameters": re.compile(r"\d"), "path": "tiny-model"})
    # The definition beside it: the stage's group and the asset's kind.
    expect(visible_text(page, "Hugging Face")).to_be_visible()
    expect(visible_text(page, "define")).to_be_visible()
    shots.take("base-model-metadata")


def see_what_was_crawled(page: Page, ui: DagsterUI, shots: Screenshots) -> None:
    """Counts, the markdown preview of the files, and the two asset checks on crawled_code with their results."""
    page.goto(f"{ui.url}/assets/crawled_code")
    check_metadata(page, {"files": re.compile(r"\d"), "quarantined": re.compile(r"\d"), "by_language": "python"})
    shots.take("crawled-code-metadata")
    preview = page.locator("tr", has=page.get_by_text("preview", exact=True)).filter(visible=True).first
    preview.get_by_text("Show Markdown", exact=False).click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator("table th").filter(has_text="size_bytes")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    expect(dialog.locator("table tbody tr").first).to_be_visible()
    shots.take("crawled-code-preview")
    button(page, "Close").click()
    expect(dialog).to_be_hidden()
    page.goto(f"{ui.url}/assets/crawled_code?view=checks")
    for check in ("schema_valid", "quarantine_rate"):
        expect(visible_text(page, check)).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    expect(visible_text(page, "Succeeded")).to_be_visible()
    shots.take("crawled-code-checks")


def test_a_data_engineer_runs_and_inspects_the_flywheel_in_the_dagster_ui(
    dagster_ui: DagsterUI, page: Page, artifacts: Path, capsys: pytest.CaptureFixture
):
    ui, shots, started = dagster_ui, Screenshots(page, artifacts), time.monotonic()
    try:
        see_the_three_stages(page, ui, shots)
        switch_off_the_discovery_sensor(page, ui, shots)
        # Two runs launched from the UI; they run (one at a time, as dagster.yaml says) while the rest is checked.
        discover_run = launch_discover_for_shop(page, ui, shots)
        base_model_run = materialize_base_model(page, ui, shots)
        see_the_jobs_sensors_and_schedules(page, ui, shots)
        launch_train_with_one_training_step(page, ui, shots)
        wait_for_run(page, discover_run)
        shots.take("discover-run")
        wait_for_run(page, base_model_run)
        shots.take("base-model-run")
        see_what_base_model_is(page, ui, shots)
        see_what_was_crawled(page, ui, shots)
    except BaseException as err:
        try:
            shots.take("failure")
        except Exception as screenshot_error:  # the browser itself may be what failed
            err.add_note(f"no failure screenshot: {screenshot_error}")
        err.add_note(f"screenshots: {artifacts}\ndagster dev log ({ui.log}), last lines:\n{ui.log_tail()}")
        raise
    finally:
        with capsys.disabled():
            print(f"\nDagster UI test: {shots.taken} screenshots in {artifacts} ({time.monotonic() - started:.0f}s)")
