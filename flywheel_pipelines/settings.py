"""Typed view of flywheel.yaml, the one file a user edits.

Every field is documented here; unknown keys and wrong types fail with the key's dotted path.
Relative paths and relative SQLite URLs are resolved against the folder that holds the config file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from upath import UPath

from flywheel_pipelines.define.tasks import TASKS

CONFIG_ENV_VAR = "FLYWHEEL_CONFIG"
# Read once, when the process starts: `mlflow.set_tracking_uri` writes this variable too, so reading it later would
# make one project's store the default of the next project the same process opens (tests, a Dagster code server).
_MLFLOW_TRACKING_URI_AT_START = os.environ.get("MLFLOW_TRACKING_URI")
CONFIG_FILE_NAME = "flywheel.yaml"


class SettingsError(ValueError):
    """flywheel.yaml is missing, not YAML, or does not match the settings below."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


KNOWN_LANGUAGES = ("python", "java", "kotlin", "typescript", "javascript", "go", "markdown", "yaml", "json")


class SourceSettings(_Section):
    """A local folder or a git repository to crawl (step 1); each is one partition of `crawled_code`."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Stable name: the Dagster partition key.")
    path: str | None = Field(default=None, description="Local folder to walk; relative to the config file.")
    git: str | None = Field(default=None, description="Any URL git accepts (https, ssh, file://); cloned shallow.")
    ref: str | None = Field(default=None, description="Branch, tag or commit of a git source (default: HEAD).")
    include: list[str] = Field(default_factory=lambda: ["**/*"], description="gitignore-style globs to read.")
    exclude: list[str] = Field(default_factory=list, description="gitignore-style globs to skip.")
    languages: list[Literal[KNOWN_LANGUAGES]] | None = Field(  # type: ignore[valid-type]
        default=None, description="Allow-list of languages; all known languages when absent."
    )

    @model_validator(mode="after")
    def _one_location(self) -> SourceSettings:
        if (self.path is None) == (self.git is None):
            raise ValueError("a source needs exactly one of `path` (a local folder) or `git` (a repository URL)")
        if self.ref is not None and self.git is None:
            raise ValueError("`ref` only applies to a `git` source")
        return self


class DiscoverSettings(_Section):
    """How sources are read (steps 1-2)."""

    max_file_bytes: int = Field(default=1_000_000, ge=1, description="Larger files are quarantined, not read.")
    workers: int = Field(default=2, ge=1, description="Processes that parse files in parallel.")
    max_quarantine_rate: float = Field(
        default=0.2, ge=0, le=1, description="Asset checks warn when more of a source than this is quarantined."
    )
    git_timeout_s: float = Field(default=600, gt=0, description="Limit for one clone or fetch.")
    quarantine_database_url: str = Field(
        default="sqlite:///data/catalog.db", description="SQLAlchemy URL of the `quarantined_assets` table."
    )


class CurateSettings(_Section):
    """Step 2: desensitisation, quality filters and deduplication of what was discovered."""

    min_tokens: int = Field(default=8, ge=0, description="Fewer base-model tokens: dropped as too short.")
    max_tokens: int = Field(default=2048, ge=1, description="More base-model tokens: dropped as too long.")
    min_body_lines: int = Field(default=2, ge=1, description="Shorter function bodies are dropped.")
    max_complexity: int = Field(default=25, ge=1, description="Higher cyclomatic complexity is dropped.")
    drop_trivial: bool = Field(default=True, description="Drop pass-only bodies and plain getters/setters.")
    dedup_threshold: float = Field(default=0.8, gt=0, le=1, description="MinHash Jaccard of near duplicates.")
    drop_rest_errors: bool = Field(default=True, description="Endpoints with error-level REST lint findings.")
    internal_host_suffixes: list[str] = Field(default_factory=list, description="Host names to replace: .corp.x")
    person_names: list[str] = Field(default_factory=list, description="Names replaced by <NAME>.")


class BaseModelSettings(_Section):
    """The open base model that adapters are trained on."""

    name_or_path: str = Field(
        description="Hugging Face hub id, local transformers folder, or a .gguf file (converted once)."
    )
    revision: str | None = Field(default=None, description="Hub revision (branch, tag or commit).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="auto = bfloat16 on a GPU that supports it, else float32."
    )


GenerationMode = Literal["reverse", "teacher"]


class Task(_Section):
    """One task of the catalogue (define/tasks/templates/<task>.yaml): whether it is built, how, and how much."""

    enabled: bool = True
    modes: list[GenerationMode] = Field(
        default=["reverse", "teacher"],
        description="reverse: answers the assets already hold; teacher: the teacher model answers the rest "
        "(only when `teacher` is configured).",
    )
    weight: float = Field(default=1.0, gt=0, description="Relative share of this task in training (resampled).")
    max_examples: int | None = Field(default=None, ge=1, description="Cap; kept by stable hash order.")


class CodeTask(Task):
    min_body_lines: int = Field(default=2, ge=1, description="Skip trivial bodies shorter than this.")
    max_body_chars: int = Field(default=1200, ge=50, description="Skip units longer than this.")


class TopicTask(Task):
    topics: list[str] = Field(default=[], description="Seed topics the teacher writes examples for.")
    expand_rounds: int = Field(default=0, ge=0, description="Self-instruct rounds that propose new topics.")
    expand_per_round: int = Field(default=10, ge=1)


class ApiToUserStoryTask(Task):
    min_link_score: float = Field(
        default=0.3, ge=0, le=1, description="Share of a story's content words an endpoint group must use to pair."
    )


class TaskSettings(_Section):
    """The task catalogue: which instruction datasets are distilled from the curated assets."""

    code_generation: CodeTask = CodeTask()
    test_generation: CodeTask = CodeTask()
    docstring_generation: CodeTask = CodeTask()
    user_story: TopicTask = TopicTask()
    api_design: TopicTask = TopicTask()
    api_to_user_story: ApiToUserStoryTask = ApiToUserStoryTask()
    eval_fraction: float = Field(
        default=0.15, gt=0, lt=1, description="Share of example groups held out for eval, by content hash."
    )
    decontamination_ngram: int = Field(
        default=20, ge=5, description="Train examples sharing this many consecutive tokens with eval or HumanEval go."
    )

    def enabled(self) -> list[str]:
        return [name for name in TASKS if getattr(self, name).enabled]


class TeacherSettings(_Section):
    """A teacher model behind any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, Ollama, ...)."""

    base_url: str = Field(description="e.g. https://api.openai.com/v1 or http://localhost:8000/v1")
    model: str
    api_key_env: str = Field(default="OPENAI_API_KEY", description="Environment variable holding the key.")
    max_concurrency: int = Field(default=4, ge=1)
    max_retries: int = Field(default=5, ge=0, description="Per request, with exponential back-off.")
    timeout_s: float = Field(default=120.0, gt=0)
    temperature: float = Field(default=0.2, ge=0, le=2)
    max_tokens: int = Field(default=1024, ge=16)
    repair_attempts: int = Field(default=2, ge=0, description="Turns that feed the validator's errors back.")
    input_cost_per_million: float = Field(default=0.0, ge=0, description="USD per 1M prompt tokens.")
    output_cost_per_million: float = Field(default=0.0, ge=0, description="USD per 1M completion tokens.")
    cache_path: str = Field(default="data/teacher_cache.db", description="Answers by prompt hash: re-runs are free.")


class TrainingSettings(_Section):
    """LoRA fine-tuning; every field is logged to MLflow, and any can be overridden for one run in the launchpad."""

    lora_r: int = Field(default=16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(default=32, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["auto"] = Field(
        default="auto", description="Modules LoRA wraps; auto = the attention projections of the architecture."
    )
    learning_rate: float = Field(default=2e-4, gt=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts"] = "linear"
    max_steps: int = Field(default=12, description="Optimizer steps; -1 trains for num_epochs instead.")
    num_epochs: float = Field(default=1.0, gt=0)
    per_device_batch_size: int = Field(default=4, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    max_seq_length: int = Field(default=256, ge=16, description="Longer examples are truncated (answer kept).")
    warmup_steps: int = Field(default=0, ge=0)
    seed: int = 42
    packing: bool = Field(
        default=True, description="Several examples per row, each attending only to itself: little padding."
    )
    eval_steps: int = Field(
        default=4, ge=1, description="Every N steps: eval loss on the eval split, and a checkpoint to resume from."
    )
    eval_examples: int = Field(default=64, ge=0, description="Eval-split examples the eval loss is computed on.")
    early_stopping_patience: int = Field(
        default=0, ge=0, description="Stop after N evaluations without a better eval loss (0: never stop early)."
    )
    adapters: Literal["mix", "per_task"] = Field(
        default="mix", description="mix: one adapter for the task mix; per_task: one adapter per task."
    )
    primary_task: str = Field(
        default="code_generation", description="With per_task adapters, the one scored and promoted (a task name)."
    )
    num_processes: int = Field(
        default=1, ge=1, description=">1: the training runs under `accelerate launch` on this many processes (GPUs)."
    )

    @field_validator("primary_task")
    @classmethod
    def _a_task_of_the_catalogue(cls, task: str) -> str:
        if task not in TASKS:
            raise ValueError(f"{task!r} is not a task of the catalogue ({', '.join(TASKS)})")
        return task


# What the promotion gate can compare: the metrics each suite of eval_scores reports (higher is better).
_EXECUTED = ("pass@1", r"sampled_pass@\d+")
GATED_METRICS = {
    "humaneval": _EXECUTED,
    "repository_tests": _EXECUTED,
    "task": ("format_valid", "chrf", "bleu", "api_table_valid", "rest_lint_clean"),
}


class MemorisationSettings(_Section):
    """How much of the training data a model reproduces when prompted with the start of a training answer."""

    prompts: int = Field(default=16, ge=0, description="Training examples whose answers are cut into prompts.")
    prefix_words: int = Field(default=16, ge=1, description="Words of the training answer given as its start.")
    max_new_tokens: int = Field(default=96, ge=1)
    span_words: int = Field(
        default=24, ge=8, description="A completion is memorised when it repeats this many words of training data."
    )


class EvaluationSettings(_Section):
    """Guide metrics for step 4: every model (base, candidate, champion) on the same problems and seeds."""

    humaneval_problems: int = Field(default=20, ge=0, le=164, description="First N HumanEval problems (164: all).")
    humaneval_task_ids: list[str] = Field(
        default_factory=list, description="A chosen subset (e.g. HumanEval/0); overrides humaneval_problems."
    )
    repository_problems: int = Field(
        default=20, ge=0, description="Held-out functions of the crawled code whose paired tests run in the sandbox."
    )
    eval_split_examples: int = Field(default=8, ge=0, description="Held-out examples scored per task.")
    samples_per_problem: int = Field(
        default=0, ge=0, description="Sampled answers per executable problem for pass@k (0: greedy only)."
    )
    pass_k: list[int] = Field(default=[1, 5, 10], description="k of the sampled pass@k, reported where n >= k.")
    temperature: float = Field(default=0.8, gt=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    seed: int = Field(default=1234, description="Sampling seed, the same for every model.")
    max_new_tokens: int = Field(default=160, ge=1)
    batch_size: int = Field(default=8, ge=1)
    sandbox_timeout_s: float = Field(default=5.0, gt=0, description="Wall-clock limit per executed sample.")
    sandbox_workers: int = Field(default=2, ge=1, description="Parallel sandboxed programs (capped by the cores).")
    memorisation: MemorisationSettings = MemorisationSettings()
    reuse_answers: bool = Field(
        default=True,
        description="A model (base, champion) that answered exactly these questions with these settings before is "
        "not asked again: its answers come from data/eval_answers.db.",
    )

    @field_validator("pass_k", "humaneval_task_ids")
    @classmethod
    def _distinct(cls, values: list) -> list:
        if len(set(values)) != len(values):
            raise ValueError("lists each value more than once")
        if any(isinstance(k, int) and k < 1 for k in values):
            raise ValueError("k of pass@k is at least 1")
        return values


class PromotionSettings(_Section):
    """The gate a candidate adapter passes before it becomes champion (a blocking asset check on eval_scores)."""

    tolerances: dict[str, float] = Field(
        default_factory=lambda: {
            "humaneval/pass@1": 0.05,
            "repository_tests/pass@1": 0.05,
            "code_generation/format_valid": 0.1,
        },
        description="suite/metric -> how far below the champion's value the candidate's may fall.",
    )
    memorisation_ceiling: float = Field(
        default=0.2, ge=0, le=1, description="Most share of completions that may repeat a long span of training data."
    )
    history_database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the promotion history; unset: the feedback database."
    )

    @field_validator("tolerances")
    @classmethod
    def _metric_names(cls, tolerances: dict[str, float]) -> dict[str, float]:
        for name, tolerance in tolerances.items():
            if "/" not in name:
                raise ValueError(f"{name!r} is not suite/metric (e.g. humaneval/pass@1)")
            suite, metric = name.split("/", 1)
            if suite == "memorisation":
                raise ValueError(f"{name}: memorisation is held under memorisation_ceiling, not compared")
            known = GATED_METRICS.get("task" if suite in TASKS else suite)
            if known is None:
                raise ValueError(f"{name}: no suite {suite!r} (humaneval, repository_tests or a task: {TASKS})")
            if not any(re.fullmatch(pattern, metric) for pattern in known):
                readable = ", ".join(pattern.replace(r"\d+", "<k>") for pattern in known)
                raise ValueError(f"{name}: {suite} has no metric {metric!r} (it has {readable})")
            if tolerance < 0:
                raise ValueError(f"the tolerance of {name} is negative")
        return tolerances


class FeedbackSettings(_Section):
    """The feedback store and the retraining triggers."""

    database_url: str = Field(default="sqlite:///data/feedback.db", description="SQLAlchemy URL.")
    retrain_min_new_events: int = Field(default=20, ge=1, description="New events that request a retrain.")
    retrain_max_age_minutes: int | None = Field(
        default=24 * 60, ge=1, description="Fewer new events also retrain once the oldest has waited this long."
    )
    sensor_interval_seconds: int = Field(default=60, ge=1, description="How often the feedback sensor looks.")
    nightly_cron: str = Field(default="0 2 * * *", description="Cron of the nightly retraining schedule.")
    timezone: str = "UTC"


class ServingSettings(_Section):
    """`flywheel serve`: the champion adapter behind an OpenAI-compatible API, and the feedback endpoint."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    api_token_env: str = Field(
        default="FLYWHEEL_API_TOKEN", description="Environment variable that holds the bearer token clients send."
    )
    model_name: str = Field(default="flywheel", description="The model id clients ask for (/v1/models).")
    reload_interval_seconds: float = Field(
        default=30, gt=0, description="How often the registry is asked whether the champion alias moved."
    )
    max_new_tokens: int = Field(default=256, ge=1, description="When a request sets no max_tokens.")


class TrackingSettings(_Section):
    """MLflow tracking and the adapter registry."""

    tracking_uri: str | None = Field(
        default=None,
        description="SQLAlchemy URL or http(s) tracking server; unset: $MLFLOW_TRACKING_URI, else "
        "sqlite:///data/mlflow/mlflow.db.",
    )
    artifact_location: str = Field(
        default="data/mlflow/artifacts", description="Artifact root for new experiments (path or URI)."
    )
    experiment: str = Field(
        default="flywheel", description="Experiment of the mix adapter; per-task adapters use <experiment>-<task>."
    )
    registered_model: str = Field(default="flywheel-code-lora", description="Per-task: <registered_model>-<task>.")
    mlflow_ui_url: str = Field(default="http://127.0.0.1:5000", description="Where run links in Dagster point.")
    dagster_ui_url: str = Field(default="http://127.0.0.1:3000", description="Where MLflow runs link back to.")


class Settings(_Section):
    """Everything the flywheel reads from flywheel.yaml."""

    data_dir: str = "data"
    assets_dir: str | None = Field(
        default=None,
        description="Where asset values are stored: a folder, or an fsspec URL (s3://bucket/flywheel/assets, "
        "gs://...; install the s3 or gcs extra); unset: <data_dir>/assets.",
    )
    sources: list[SourceSettings] = Field(min_length=1)
    discover: DiscoverSettings = DiscoverSettings()
    curate: CurateSettings = CurateSettings()
    base_model: BaseModelSettings
    tasks: TaskSettings = TaskSettings()
    teacher: TeacherSettings | None = None
    training: TrainingSettings = TrainingSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    promotion: PromotionSettings = PromotionSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    serving: ServingSettings = ServingSettings()
    tracking: TrackingSettings = TrackingSettings()

    _root: Path = PrivateAttr(default_factory=Path.cwd)
    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The config file these settings were read from (None when built in code)."""
        return self._source

    @property
    def root(self) -> Path:
        """The folder that holds the config file; relative paths are resolved against it."""
        return self._root

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self._root / p).resolve()

    def resolve_url(self, url: str) -> str:
        """Make a relative `sqlite:///file` URL absolute, so every process finds the same file."""
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.resolve(url[len(prefix) :]))
        return url

    @property
    def data_path(self) -> Path:
        return self.resolve(self.data_dir)

    @property
    def assets_path(self) -> Path | UPath:
        """Where every asset's value is stored, one file per asset (and per source partition): a local folder, or a
        universal path on object storage when `assets_dir` is a URL."""
        if self.assets_dir is None:
            return self.data_path / "assets"
        return UPath(self.assets_dir) if "://" in self.assets_dir else self.resolve(self.assets_dir)

    @property
    def feedback_database_url(self) -> str:
        return self.resolve_url(self.feedback.database_url)

    @property
    def promotion_history_url(self) -> str:
        return self.resolve_url(self.promotion.history_database_url or self.feedback.database_url)

    @property
    def quarantine_database_url(self) -> str:
        return self.resolve_url(self.discover.quarantine_database_url)

    @property
    def mlflow_tracking_uri(self) -> str:
        """flywheel.yaml's tracking_uri, else $MLFLOW_TRACKING_URI, else the embedded SQLite store under data/."""
        uri = self.tracking.tracking_uri or _MLFLOW_TRACKING_URI_AT_START
        return self.resolve_url(uri or f"sqlite:///{self.data_dir}/mlflow/mlflow.db")

    @property
    def mlflow_artifact_location(self) -> str:
        loc = self.tracking.artifact_location
        # A URI (s3://, gs://, or mlflow-artifacts:/ through a tracking server) as it is; a path made absolute.
        return loc if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:", loc) else self.resolve(loc).as_uri()

    @property
    def base_model_reference(self) -> str:
        """The base model as a path when it is a local file or folder, else the hub id (or the
        `package:<module>/<file>` reference to a file inside an installed package) unchanged."""
        if self.base_model.name_or_path.startswith("package:"):
            return self.base_model.name_or_path
        candidate = self.resolve(self.base_model.name_or_path)
        looks_local = candidate.exists() or self.base_model.name_or_path.endswith(".gguf")
        return str(candidate) if looks_local else self.base_model.name_or_path


def default_config_path() -> Path:
    """FLYWHEEL_CONFIG, else ./flywheel.yaml, else the one beside the package (a source checkout)."""
    if env := os.environ.get(CONFIG_ENV_VAR):
        return Path(env).expanduser().resolve()
    cwd = Path.cwd() / CONFIG_FILE_NAME
    if cwd.exists():
        return cwd.resolve()
    return (Path(__file__).resolve().parent.parent / CONFIG_FILE_NAME).resolve()


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        reason = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {where}: {reason}")
    return "\n".join(lines)


def parse_settings(data: object, root: Path, origin: str = CONFIG_FILE_NAME) -> Settings:
    if not isinstance(data, dict):
        raise SettingsError(f"{origin}: expected a mapping of settings at the top level")
    names = [s.get("name") for s in data.get("sources") or [] if isinstance(s, dict)]
    if duplicates := sorted({n for n in names if names.count(n) > 1}):
        raise SettingsError(f"{origin} is not valid:\n  sources: duplicate source names {duplicates}")
    try:
        settings = Settings.model_validate(data)
    except ValidationError as err:
        raise SettingsError(f"{origin} is not valid:\n{_format_errors(err)}") from None
    settings._root = root
    return settings


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    config_path = Path(path).expanduser().resolve() if path else default_config_path()
    if not config_path.is_file():
        raise SettingsError(f"config file not found: {config_path} (set {CONFIG_ENV_VAR} or create it)")
    try:
        data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise SettingsError(f"{config_path} is not valid YAML: {err}") from None
    settings = parse_settings(data, config_path.parent, origin=str(config_path))
    settings._source = config_path
    return settings
