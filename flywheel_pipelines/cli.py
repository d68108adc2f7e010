"""`flywheel`: the flywheel's command line — run a turn, serve, move feedback and datasets, score, benchmark.

What a person does by hand, beside the Dagster UI (`make ui`). Every command reads flywheel.yaml: `--config`, else
$FLYWHEEL_CONFIG, else ./flywheel.yaml. Exit status: 0 done, 1 failed, 2 a usage or settings error, or nothing stored
yet to work on.
"""

import ast
import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from flywheel_pipelines.settings import Settings, SettingsError, load_settings

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"  # beside the package, in a source checkout
# What `eval --suite` takes besides a task of the catalogue (scoring.py names them).
EVAL_SUITES = ("humaneval", "repository_tests", "memorisation")
NOT_RUN_YET = "run `make run` first"


class CliError(Exception):
    """A failure the user can act on: printed as one `error: ...` line, no traceback, and exit status `code`."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


app = typer.Typer(
    name="flywheel",
    help=__doc__,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
feedback_app = typer.Typer(
    help="The feedback store: import and export accept / reject / edit events.", no_args_is_help=True
)
dataset_app = typer.Typer(help="The stored datasets, in the formats trainers read.", no_args_is_help=True)
model_app = typer.Typer(help="The base model.", no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")
app.add_typer(dataset_app, name="dataset")
app.add_typer(model_app, name="model")


@app.callback()
def _options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            help="flywheel.yaml to use (default: $FLYWHEEL_CONFIG, else ./flywheel.yaml).", show_default=False
        ),
    ] = None,
) -> None:
    ctx.obj = {"config": config}


def _settings(ctx: typer.Context) -> Settings:
    return load_settings(ctx.obj["config"])


def _say(text: str) -> None:
    """What is going on, on standard error: standard output carries what a command produces."""
    print(text, file=sys.stderr, flush=True)


# --- a turn of the flywheel -------------------------------------------------------------------------------------------


@app.command("run")
def run_command(ctx: typer.Context) -> None:
    """One full turn: discover every source, then train, score and promote (also: `flywheel turn`).

    Each step is a run in the project's Dagster instance (make ui shows them). In a terminal, a progress bar shows
    the stage and the asset being materialised."""
    settings = _settings(ctx)
    if not _turn(settings):
        raise typer.Exit(1)


app.command("turn", hidden=True, help="One full turn (the name `make run` uses): the same as `flywheel run`.")(
    run_command
)


def _turn(settings: Settings) -> bool:
    import dagster as dg
    from rich.console import Console

    from flywheel_pipelines.orchestration.turn import run_turn

    console = Console()
    if not console.is_terminal:  # a log, a pipe, a test: the plain lines
        return run_turn(settings, log=print)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    stages = [f"discover {source.name}" for source in settings.sources] + ["train"]
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with dg.DagsterInstance.get() as instance, Progress(*columns, TimeElapsedColumn(), console=console) as progress:
        bar = progress.add_task(stages[0], total=len(stages))
        finished = 0

        def on_event(event: dg.DagsterEvent) -> None:  # one Dagster run per stage, in the order of `stages`
            nonlocal finished
            if event.event_type in (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE):
                finished += 1
                stage = stages[min(finished, len(stages) - 1)]
                progress.update(bar, completed=finished, description=stage)
            elif event.event_type == dg.DagsterEventType.STEP_START:
                stage = stages[min(finished, len(stages) - 1)]
                progress.update(bar, description=f"{stage}: {event.step_key}")

        _follow_events(instance, on_event)
        return run_turn(settings, instance, log=lambda line: progress.console.print(line, markup=False))


def _follow_events(instance, callback) -> None:
    """Call `callback` with every Dagster event this instance stores from now on: in-process runs hand each one to
    `handle_new_event`. A callback that fails never fails the run."""
    store = instance.handle_new_event

    def handle_new_event(event, *args, **kwargs):
        store(event, *args, **kwargs)
        if event.is_dagster_event:
            with contextlib.suppress(Exception):
                callback(event.get_dagster_event())

    instance.handle_new_event = handle_new_event


# --- serving and feedback ---------------------------------------------------------------------------------------------

LogLevel = Literal["critical", "error", "warning", "info", "debug"]


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Instead of serving.host.", show_default=False)] = None,
    port: Annotated[int | None, typer.Option(help="Instead of serving.port.", show_default=False)] = None,
    log_level: Annotated[LogLevel, typer.Option(help="The server's log level.")] = "info",
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request.")] = False,
) -> None:
    """Serve the champion adapter behind an OpenAI-compatible API, with POST /v1/feedback.

    The bearer token is read from the environment variable serving.api_token_env names. The server follows the
    registry: a newly promoted champion is swapped in while the old one keeps answering."""
    from flywheel_pipelines.deliver.api import MissingToken, api_token

    settings = _settings(ctx)
    try:
        token = api_token(settings)  # before anything loads: no token, no server
    except MissingToken as err:
        raise CliError(str(err), 2) from None
    import uvicorn
    from sqlalchemy.exc import SQLAlchemyError

    from flywheel_pipelines.deliver.api import create_app

    try:
        server = create_app(settings, token=token)
    except SQLAlchemyError as err:
        raise CliError(f"cannot open the feedback store {settings.feedback.database_url}: {err.orig or err}") from None
    # One worker: one process owns the model and is the feedback store's only writer (group commit).
    uvicorn.run(
        server,
        host=host or settings.serving.host,
        port=port or settings.serving.port,
        workers=1,
        log_level=log_level,
        access_log=access_log,
    )


@feedback_app.command("import")
def feedback_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="One JSON event per line (schemas/feedback_event.schema.json).")],
    quarantine_invalid: Annotated[
        bool,
        typer.Option(
            "--quarantine-invalid",
            help="Import the valid lines and keep invalid ones in the quarantine table, instead of importing nothing.",
        ),
    ] = False,
) -> None:
    """Import accept / reject / edit events from a JSONL file (all or nothing, unless --quarantine-invalid)."""
    from flywheel_pipelines.deliver.feedback_store import FeedbackImportError, FeedbackStore

    settings = _settings(ctx)
    if not file.is_file():
        raise CliError(f"no such file: {file}", 2)
    store = FeedbackStore(settings.feedback_database_url)
    try:
        report = store.import_jsonl(file, quarantine_invalid=quarantine_invalid)
    except FeedbackImportError as err:
        raise CliError(f"{err}\nfix those lines, or pass --quarantine-invalid to import the rest") from None
    finally:
        store.dispose()
    for line in report.invalid:
        _say(f"quarantined line {line.line_number}: {line.reason}")
    print(report.summary())


FeedbackFormat = Literal["jsonl", "parquet"]
OutFile = Annotated[
    Path | None, typer.Option("--out", help="The file to write (default: standard output).", show_default=False)
]


@feedback_app.command("export")
def feedback_export(
    ctx: typer.Context,
    fmt: Annotated[
        FeedbackFormat, typer.Option("--format", help="jsonl: what `feedback import` reads; parquet: the same fields.")
    ] = "jsonl",
    since_id: Annotated[
        int, typer.Option(min=0, help="Only events stored after this one (the newest id the last export named).")
    ] = 0,
    out: OutFile = None,
) -> None:
    """Export the stored feedback events, in the JSONL schema `feedback import` reads."""
    from flywheel_pipelines.deliver.feedback_store import FeedbackStore
    from flywheel_pipelines.exports import feedback_export as export

    settings = _settings(ctx)
    _binary_needs_a_file(fmt, out)
    store = FeedbackStore(settings.feedback_database_url)
    try:
        events = store.events(after_id=since_id)
    finally:
        store.dispose()
    export(events, fmt).write(out)
    newest = events[-1]["id"] if events else since_id
    _say(f"exported {len(events)} events to {out or 'standard output'}; the newest is {newest} (--since-id {newest})")


def _binary_needs_a_file(fmt: str, out: Path | None) -> None:
    if fmt == "parquet" and out is None:
        raise CliError("parquet is binary: name the file to write with --out", 2)


# --- datasets ---------------------------------------------------------------------------------------------------------

DatasetFormat = Literal["alpaca", "chat", "sharegpt", "parquet", "dpo", "kto"]
Split = Literal["train", "eval", "all"]


@dataset_app.command("export")
def dataset_export(
    ctx: typer.Context,
    fmt: Annotated[
        DatasetFormat,
        typer.Option(
            "--format",
            help="alpaca (LLaMA-Factory, axolotl), chat (messages: trl, axolotl), sharegpt, parquet (every column), "
            "or the preference data: dpo, kto (trl).",
        ),
    ] = "chat",
    split: Annotated[Split, typer.Option(help="Which split; all: train, then eval.")] = "train",
    out: OutFile = None,
) -> None:
    """Export the instruction dataset or the preference data the last turn stored, in one training format."""
    from flywheel_pipelines.exports import NothingStored, dataset_export

    settings = _settings(ctx)
    _binary_needs_a_file(fmt, out)
    try:
        export = dataset_export(settings.data_path, fmt, split)
    except (NothingStored, ValueError) as err:
        raise CliError(str(err), 2) from None
    export.write(out)
    _say(f"exported {len(export.records)} {fmt} records ({split}) to {out or 'standard output'}")


# --- models: fetch, train, score --------------------------------------------------------------------------------------


@model_app.command("fetch")
def model_fetch(ctx: typer.Context) -> None:
    """Fetch the offline default model (SmolLM2-135M-Instruct GGUF) to where flywheel.yaml names it."""
    from flywheel_pipelines.define.base_model import fetch_default_model

    settings = _settings(ctx)
    target = settings.resolve(settings.base_model.name_or_path)
    if target.suffix != ".gguf":
        print(f"base_model is {settings.base_model.name_or_path}: nothing to fetch")
        return
    path = fetch_default_model(target.parent)
    if path != target:
        raise CliError(f"fetched {path}, but flywheel.yaml names {target}")
    print(f"default base model at {path}")


Dtype = Literal["auto", "float32", "bfloat16", "float16"]


@app.command()
def train(
    ctx: typer.Context,
    training_json: Annotated[
        Path | None,
        typer.Option(help="TrainingSettings as JSON, instead of flywheel.yaml's `training`.", show_default=False),
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Write the adapters' records (JSON) here.", show_default=False)
    ] = None,
    dtype: Annotated[Dtype | None, typer.Option(help="Instead of base_model.dtype.", show_default=False)] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(help="An MLflow run tag, key=value (repeatable).", metavar="KEY=VALUE", show_default=False),
    ] = None,
) -> None:
    """Train adapters on the stored dataset: what lora_adapter runs, for `accelerate launch` on several GPUs.

    By hand, after `make run` stored a dataset:
    accelerate launch --multi_gpu --num_processes 4 -m flywheel_pipelines.cli train"""
    from flywheel_pipelines.define.adapters import train_adapters
    from flywheel_pipelines.define.tracking import Tracking
    from flywheel_pipelines.define.train import is_main_process
    from flywheel_pipelines.orchestration.resources import AssetFiles
    from flywheel_pipelines.settings import TrainingSettings

    settings = _settings(ctx)
    tags = {}
    for pair in tag or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--tag {pair!r} is not key=value", 2)
        tags[key] = value
    files = AssetFiles(settings.assets_path)
    dataset, base = files.read("instruction_dataset"), files.read("base_model")
    if dataset is None or base is None:
        raise CliError(f"materialise instruction_dataset and base_model first: {NOT_RUN_YET}", 2)
    hp = settings.training
    if training_json:
        hp = TrainingSettings.model_validate(json.loads(training_json.read_text()))
    tracking = Tracking(
        settings.mlflow_tracking_uri,
        settings.mlflow_artifact_location,
        settings.tracking.experiment,
        settings.tracking.registered_model,
    )
    dataset_dir = settings.data_path / "datasets" / "instruction_dataset"
    runs = train_adapters(
        dataset,
        base["path"],
        hp,
        {task: getattr(settings.tasks, task).weight for task in settings.tasks.enabled()},
        settings.data_path / "adapters",
        tracking,
        dtype=dtype or settings.base_model.dtype,
        dataset_source=str(dataset_dir / "train.parquet"),
        dataset_card=dataset_dir / "README.md",
        tags=tags,
    )
    if is_main_process():
        records = json.dumps([r.as_record() for r in runs], indent=2)
        if output:
            output.write_text(records)
        print(records)


@app.command("eval")
def evaluate(
    ctx: typer.Context,
    adapter: Annotated[
        str | None,
        typer.Option(
            help="An adapter folder, or a registered version: 3, v3, champion (default: none, the base model alone).",
            metavar="PATH|VERSION",
            show_default=False,
        ),
    ] = None,
    base_model: Annotated[
        str | None,
        typer.Option(
            help="A hub id, model folder or .gguf file (default: the base a registered version was trained on, "
            "else flywheel.yaml's).",
            metavar="REF",
            show_default=False,
        ),
    ] = None,
    suite: Annotated[
        list[str] | None,
        typer.Option(
            help="humaneval, repository_tests, memorisation or a task (code_generation, ...); repeatable. "
            "Default: all of them.",
            metavar="SUITE",
            show_default=False,
        ),
    ] = None,
    humaneval_problems: Annotated[
        int | None,
        typer.Option(
            min=0, max=164, help="The first N HumanEval problems, instead of evaluation's.", show_default=False
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Write the scores and every scored answer here, as JSON.", show_default=False)
    ] = None,
) -> None:
    """Score an adapter, or the base model alone, on the eval_scores suites and print the comparison table.

    The same problems, seeds and code as the eval_scores asset: HumanEval and the repository's paired tests run in
    the sandbox, each task's held-out split of the stored instruction dataset, memorisation of its train split."""
    from flywheel_pipelines.define.evaluate.scoring import ModelUnderTest, comparison_table, evaluate_models

    settings = _settings(ctx)
    plan, evaluation, asked = _evaluation_plan(settings, suite, humaneval_problems)
    base_path, base_ref, candidate = _models_to_score(settings, adapter, base_model)
    models = [ModelUnderTest("base", base_ref, base_path)]
    if candidate is not None:
        models.append(ModelUnderTest("candidate", candidate[0], base_path, candidate[1]))
    _say(
        f"scoring {', '.join(f'{m.role} ({m.reference})' for m in models)} on "
        + ", ".join(f"{name} ({n})" for name, n in asked.items() if n)
    )
    result = evaluate_models(models, plan, evaluation, settings.base_model.dtype)
    table = comparison_table(result.scores)
    if output:
        report = {
            "models": {m.role: m.reference for m in models},
            "scores": result.scores,
            "samples": result.samples,
            "comparison": table,
        }
        output.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(table)


def _evaluation_plan(settings: Settings, suite: list[str] | None, humaneval_problems: int | None):
    """(the plan, the evaluation settings it was made with, how many questions each suite asks): eval_scores' plan
    from the stored assets, cut down to the chosen suites."""
    from flywheel_pipelines.define.evaluate.scoring import plan_evaluation
    from flywheel_pipelines.define.tasks import TASKS
    from flywheel_pipelines.orchestration.resources import AssetFiles

    suites = list(dict.fromkeys(suite or (*EVAL_SUITES, *TASKS)))
    if unknown := [s for s in suites if s not in (*EVAL_SUITES, *TASKS)]:
        raise CliError(f"no suite {unknown[0]!r}: choose from {', '.join((*EVAL_SUITES, *TASKS))}", 2)
    evaluation = _evaluation_settings(settings, suites, humaneval_problems)
    files = AssetFiles(settings.assets_path)
    needs_dataset = set(suites) != {"humaneval"}  # held-out questions, memorisation probes, repository problems
    examples = files.records("instruction_dataset") if needs_dataset else []
    if needs_dataset and not examples:
        raise CliError(
            f"no instruction dataset stored yet ({files.path('instruction_dataset', None, '.parquet')}): "
            f"{NOT_RUN_YET}, or score HumanEval alone with --suite humaneval",
            2,
        )
    crawl: dict[str, list[dict]] = {}
    if {"repository_tests", "memorisation"} & set(suites):  # paired tests to run; secrets answers must not repeat
        for name in ("crawled_code", "code_units"):  # one partition per source
            crawl[name] = [r for source in settings.sources for r in files.records(name, source.name)]
        crawl["curated_assets"] = files.records("curated_assets")
    plan, dropped = plan_evaluation(
        examples,
        evaluation,
        curated_records=crawl.get("curated_assets", []),
        code_units=crawl.get("code_units", []),
        crawled_files=crawl.get("crawled_code", []),
    )
    plan.task_examples = {task: rows for task, rows in plan.task_examples.items() if task in suites}
    for problem_id, reason in dropped.items():
        _say(f"repository problem {problem_id} left out: {reason}")
    asked = {
        "humaneval": len(plan.humaneval),
        "repository_tests": len(plan.repository),
        **{task: len(rows) for task, rows in plan.task_examples.items()},
        "memorisation": len(plan.probes),
    }
    if not any(asked.values()):
        raise CliError(f"nothing to ask in {', '.join(suites)}: every suite is empty in this project's data", 2)
    return plan, evaluation, asked


def _evaluation_settings(settings: Settings, suites: list[str], humaneval_problems: int | None):
    """flywheel.yaml's `evaluation`, with what the chosen suites leave out set to nothing."""
    update: dict = {}
    if humaneval_problems is not None:
        update |= {"humaneval_problems": humaneval_problems, "humaneval_task_ids": []}
    if "humaneval" not in suites:
        update |= {"humaneval_problems": 0, "humaneval_task_ids": []}
    if "repository_tests" not in suites:
        update["repository_problems"] = 0
    if "memorisation" not in suites:
        update["memorisation"] = settings.evaluation.memorisation.model_copy(update={"prompts": 0})
    return settings.evaluation.model_copy(update=update)


def _models_to_score(
    settings: Settings, adapter: str | None, base_model: str | None
) -> tuple[Path, str, tuple[str, Path] | None]:
    """(base model folder, how to name it, (adapter reference, adapter folder) or None)."""
    from flywheel_pipelines.define.base_model import resolve_base_model

    candidate, trained_on = _adapter(settings, adapter) if adapter else (None, None)
    if base_model is None and trained_on is not None:
        return trained_on, trained_on.name, candidate
    reference = base_model or settings.base_model.name_or_path
    if base_model is not None and Path(base_model).exists():
        base_model = str(Path(base_model).resolve())  # relative to where the command runs, not to flywheel.yaml
    try:
        resolved = resolve_base_model(
            base_model or settings.base_model_reference,
            settings.data_path / "models",
            None if base_model else settings.base_model.revision,
        )
    except (OSError, RuntimeError) as err:
        raise CliError(str(err), 2) from None
    return resolved.path, reference, candidate


def _adapter(settings: Settings, reference: str) -> tuple[tuple[str, Path], Path | None]:
    """((how to name it, its folder), the base model folder it was trained on when the registry says)."""
    folder = Path(reference).expanduser()
    if folder.is_dir():
        if not (folder / "adapter_config.json").exists():
            raise CliError(f"{folder} holds no adapter_config.json: not a PEFT adapter folder", 2)
        return (folder.name, folder.resolve()), None
    from mlflow.exceptions import MlflowException

    from flywheel_pipelines.define.tracking import AdapterVersion, ensure_local_adapter
    from flywheel_pipelines.deliver.serving import ModelLoader, ModelUnavailable

    loader = ModelLoader(settings)  # the registered model `serve` serves: the mix's, or the primary task's
    client, name = loader.tracking.client(), loader.tracking.registered_model
    number = reference.removeprefix("v")
    try:
        if number.isdigit():
            found = client.get_model_version(name, number)
        else:
            found = client.get_model_version_by_alias(name, reference)
    except MlflowException:
        versions: list[int] = []
        with contextlib.suppress(MlflowException):
            versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
        known = ", ".join(f"v{v}" for v in versions) if versions else f"none yet: {NOT_RUN_YET}"
        message = f"{reference!r} is neither an adapter folder nor a version of {name} (versions: {known})"
        raise CliError(message, 2) from None
    version = AdapterVersion(str(found.version), found.run_id or "", Path(found.tags.get("adapter_path", "")), {})
    try:
        folder = ensure_local_adapter(loader.tracking, version, settings.data_path / "adapters" / "registry")
        trained_on = loader.trained_base_model(version, folder)
    except (MlflowException, ModelUnavailable, OSError, RuntimeError) as err:
        raise CliError(f"version {version.version} of {name}: {err}") from None
    return (f"v{version.version}", folder), trained_on


# --- where to look ----------------------------------------------------------------------------------------------------


@app.command()
def where(ctx: typer.Context) -> None:
    """Where to look after a turn: the UIs, the adapter, the champion and the eval table."""
    import pandas as pd

    from flywheel_pipelines.define.evaluate.scoring import comparison_table

    settings = _settings(ctx)
    assets = settings.assets_path
    print("Dagster UI:  make ui      (then http://127.0.0.1:3000 — every asset, run and lineage)")
    print(f"MLflow UI:   make mlflow  (then http://127.0.0.1:5000 — experiment '{settings.tracking.experiment}')")
    adapter_file, champion_file = assets / "lora_adapter.json", assets / "champion_adapter.json"
    if adapter_file.exists():
        adapter = json.loads(adapter_file.read_text())
        print(f"Adapter:     {adapter['path']} (version {adapter['version']}, MLflow run {adapter['mlflow_run_id']})")
    if champion_file.exists():
        champion = json.loads(champion_file.read_text())
        print(f"Champion:    version {champion['version']} at {champion['adapter_path']} — {champion['reason']}")
    scores_file = assets / "eval_scores.parquet"
    if scores_file.exists():
        print(f"Eval table:  {scores_file}\n")
        print(comparison_table(pd.read_parquet(str(scores_file)).to_dict("records")))
    else:
        print(f"No eval scores yet: {NOT_RUN_YET}.")


@app.command("mlflow-uri")
def mlflow_uri(ctx: typer.Context) -> None:
    """Print the MLflow tracking URI (what `make mlflow` serves)."""
    print(_settings(ctx).mlflow_tracking_uri)


@app.command()
def promotions(
    ctx: typer.Context,
    registered_model: Annotated[
        str | None, typer.Option(help="Only this registered model (default: all).", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many decisions.")] = 20,
) -> None:
    """The promotion history: every candidate promoted or refused, and why, the latest first."""
    from flywheel_pipelines.define.promotion import PromotionHistory

    settings = _settings(ctx)
    history = PromotionHistory(settings.promotion_history_url)
    try:
        decisions = history.decisions(registered_model, limit=limit)
    finally:
        history.dispose()
    if not decisions:
        print(f"No promotion decisions yet: {NOT_RUN_YET}.")
    for d in decisions:
        outcome = "promoted" if d["promoted"] else "refused "
        against = f"against v{d['champion_version']}" if d["champion_version"] else "(no champion)"
        print(f"{d['decided_at']:%Y-%m-%d %H:%M} {d['registered_model']} v{d['candidate_version']} {outcome} {against}")
        print(f"    {d['reason']}")


# --- benchmarks -------------------------------------------------------------------------------------------------------


@app.command()
def bench(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Benchmarks to run, one after the other (e.g. crawl_stdlib); none: list them.",
            metavar="NAME",
            show_default=False,
        ),
    ] = None,
    list_them: Annotated[bool, typer.Option("--list", help="List the benchmarks and what each measures.")] = False,
) -> None:
    """Run the benchmarks in bench/, each against its named baseline, or list them.

    Each is `python bench/NAME.py`; run one that way to pass it options (its docstring lists them)."""
    if not BENCH_DIR.is_dir():
        raise CliError(f"no benchmarks at {BENCH_DIR}: they come with the source checkout", 2)
    scripts = {p.stem: p for p in sorted(BENCH_DIR.glob("*.py")) if not p.name.startswith("_")}
    if list_them or not names:
        width = max(map(len, scripts), default=0)
        for name, path in scripts.items():
            print(f"{name:<{width}}  {_first_docstring_line(path)}")
        return
    chosen = [n.removesuffix(".py") for n in names]
    if unknown := [n for n in chosen if n not in scripts]:
        raise CliError(f"no benchmark {unknown[0]!r} in {BENCH_DIR}: there are {', '.join(scripts)}", 2)
    failed = []
    for name in chosen:
        _say(f"== {name}: {Path(sys.executable).name} bench/{name}.py")
        if subprocess.run([sys.executable, str(scripts[name])], cwd=BENCH_DIR.parent).returncode != 0:
            failed.append(name)
    if failed:
        raise CliError(f"failed: {', '.join(failed)}")


def _first_docstring_line(path: Path) -> str:
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except SyntaxError:
        return "(does not parse)"
    return doc.strip().splitlines()[0] if doc.strip() else "(no docstring)"


# --- the entry point --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """`flywheel` (and `python -m flywheel_pipelines.cli`): run the command `argv` names, return its exit status."""
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="flywheel", standalone_mode=True)
    except SystemExit as done:  # standalone mode ends every command, --help and usage errors too, with an exit
        return done.code if isinstance(done.code, int) else int(done.code is not None)
    except SettingsError as err:
        _say(f"error: {err}")
        return 2
    except CliError as err:
        _say(f"error: {err}")
        return err.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
