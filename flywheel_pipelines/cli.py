"""`flywheel`: the command line next to the Dagster UI — import feedback, fetch the default model, show results."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flywheel_pipelines.settings import SettingsError, load_settings


def _feedback_import(args: argparse.Namespace) -> int:
    from flywheel_pipelines.deliver.feedback_store import FeedbackImportError, FeedbackStore

    settings = load_settings(args.config)
    path = Path(args.file)
    if not path.is_file():
        print(f"error: no such file: {path}", file=sys.stderr)
        return 2
    store = FeedbackStore(settings.feedback_database_url)
    try:
        report = store.import_jsonl(path, quarantine_invalid=args.quarantine_invalid)
    except FeedbackImportError as err:
        print(f"error: {err}", file=sys.stderr)
        print("fix those lines, or pass --quarantine-invalid to import the rest", file=sys.stderr)
        return 1
    finally:
        store.dispose()
    for line in report.invalid:
        print(f"quarantined line {line.line_number}: {line.reason}", file=sys.stderr)
    print(report.summary())
    return 0


def _model_fetch(args: argparse.Namespace) -> int:
    from flywheel_pipelines.define.base_model import fetch_default_model

    settings = load_settings(args.config)
    target = settings.resolve(settings.base_model.name_or_path)
    if target.suffix != ".gguf":
        print(f"base_model is {settings.base_model.name_or_path}: nothing to fetch")
        return 0
    path = fetch_default_model(target.parent)
    if path != target:
        print(f"error: fetched {path}, but flywheel.yaml names {target}", file=sys.stderr)
        return 1
    print(f"default base model at {path}")
    return 0


def _where(args: argparse.Namespace) -> int:
    """Where to look after a turn of the flywheel."""
    import pandas as pd

    settings = load_settings(args.config)
    assets = settings.data_path / "assets"
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
        scores = pd.read_parquet(scores_file)
        print(f"Eval table:  {scores_file}\n")
        from flywheel_pipelines.define.evaluate.scoring import comparison_table

        print(comparison_table(scores.to_dict("records")))
    else:
        print("No eval scores yet: run `make run`.")
    return 0


def _train(args: argparse.Namespace) -> int:
    """Train the adapters on the stored instruction_dataset and base_model — the same code the `lora_adapter` asset
    runs, here so that `accelerate launch` can start it on several GPUs (or CPU processes)."""
    from flywheel_pipelines.define.adapters import train_adapters
    from flywheel_pipelines.define.tracking import Tracking
    from flywheel_pipelines.define.train import is_main_process
    from flywheel_pipelines.orchestration.resources import AssetFiles
    from flywheel_pipelines.settings import TrainingSettings

    settings = load_settings(args.config)
    files = AssetFiles(settings.assets_path)
    dataset, base = files.read("instruction_dataset"), files.read("base_model")
    if dataset is None or base is None:
        print("error: materialise instruction_dataset and base_model first (`make run`)", file=sys.stderr)
        return 2
    hp = settings.training
    if args.training_json:
        hp = TrainingSettings.model_validate(json.loads(Path(args.training_json).read_text()))
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
        dtype=args.dtype or settings.base_model.dtype,
        dataset_source=str(dataset_dir / "train.parquet"),
        dataset_card=dataset_dir / "README.md",
        tags=dict(tag.split("=", 1) for tag in args.tag),
    )
    if is_main_process():
        records = json.dumps([r.as_record() for r in runs], indent=2)
        if args.output:
            Path(args.output).write_text(records)
        print(records)
    return 0


def _turn(args: argparse.Namespace) -> int:
    from flywheel_pipelines.orchestration.turn import run_turn

    return 0 if run_turn(load_settings(args.config)) else 1


def _promotions(args: argparse.Namespace) -> int:
    """The promotion history: every decision on a candidate adapter, the latest first."""
    from flywheel_pipelines.define.promotion import PromotionHistory

    settings = load_settings(args.config)
    history = PromotionHistory(settings.promotion_history_url)
    try:
        decisions = history.decisions(args.registered_model, limit=args.limit)
    finally:
        history.dispose()
    if not decisions:
        print("No promotion decisions yet: run `make run`.")
    for d in decisions:
        outcome = "promoted" if d["promoted"] else "refused "
        against = f"against v{d['champion_version']}" if d["champion_version"] else "(no champion)"
        print(f"{d['decided_at']:%Y-%m-%d %H:%M} {d['registered_model']} v{d['candidate_version']} {outcome} {against}")
        print(f"    {d['reason']}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    """The champion behind an OpenAI-compatible API, and the feedback endpoint (deliver/api.py)."""
    from flywheel_pipelines.deliver.api import MissingToken, api_token

    settings = load_settings(args.config)
    try:
        token = api_token(settings)  # before anything loads: no token, no server
    except MissingToken as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import uvicorn
    from sqlalchemy.exc import SQLAlchemyError

    from flywheel_pipelines.deliver.api import create_app

    try:
        app = create_app(settings, token=token)
    except SQLAlchemyError as err:
        print(
            f"error: cannot open the feedback store {settings.feedback.database_url}: {err.orig or err}",
            file=sys.stderr,
        )
        return 1
    host, port = args.host or settings.serving.host, args.port or settings.serving.port
    # One worker: one process owns the model and is the feedback store's only writer (group commit).
    uvicorn.run(app, host=host, port=port, workers=1, log_level=args.log_level, access_log=args.access_log)
    return 0


def _mlflow_uri(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    print(settings.mlflow_tracking_uri)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flywheel", description=__doc__)
    parser.add_argument("--config", help="flywheel.yaml to use (default: $FLYWHEEL_CONFIG or ./flywheel.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)

    feedback = sub.add_parser("feedback", help="the feedback store").add_subparsers(dest="action", required=True)
    imp = feedback.add_parser("import", help="import accept / reject / edit events from a JSONL file")
    imp.add_argument("file", help="one JSON event per line (schemas/feedback_event.schema.json)")
    imp.add_argument(
        "--quarantine-invalid",
        action="store_true",
        help="import the valid lines and keep invalid ones in the quarantine table, instead of importing nothing",
    )
    imp.set_defaults(func=_feedback_import)

    model = sub.add_parser("model", help="the base model").add_subparsers(dest="action", required=True)
    model.add_parser("fetch", help="fetch the offline default model (SmolLM2-135M-Instruct GGUF)").set_defaults(
        func=_model_fetch
    )

    sub.add_parser(
        "turn", help="one full turn: discover every source, then train, score and promote (Dagster runs)"
    ).set_defaults(func=_turn)
    train = sub.add_parser(
        "train",
        help="train adapters on the stored dataset (what lora_adapter runs; start it with `accelerate launch` for "
        "several GPUs)",
    )
    train.add_argument("--training-json", help="TrainingSettings as JSON, instead of flywheel.yaml's `training`")
    train.add_argument("--output", help="write the adapters' records (JSON) here")
    train.add_argument(
        "--dtype", choices=["auto", "float32", "bfloat16", "float16"], help="instead of base_model.dtype"
    )
    train.add_argument("--tag", action="append", default=[], help="an MLflow run tag, key=value (repeatable)")
    train.set_defaults(func=_train)
    sub.add_parser("where", help="where to look after a run").set_defaults(func=_where)
    promotions = sub.add_parser(
        "promotions", help="the promotion history: every candidate promoted or refused, and why"
    )
    promotions.add_argument("--registered-model", help="only this registered model (default: all)")
    promotions.add_argument("--limit", type=int, default=20)
    promotions.set_defaults(func=_promotions)
    sub.add_parser("mlflow-uri", help="print the MLflow tracking URI").set_defaults(func=_mlflow_uri)
    serve = sub.add_parser(
        "serve",
        help="serve the champion adapter behind an OpenAI-compatible API, with POST /v1/feedback "
        "(the bearer token is read from the variable serving.api_token_env names)",
    )
    serve.add_argument("--host", help="instead of serving.host")
    serve.add_argument("--port", type=int, help="instead of serving.port")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(func=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
