"""Training throughput: our LoRA trainer (`define.train.train_lora`: first-fit-decreasing packing, per-example
position ids, prompt masked) vs trl's `SFTTrainer` with `SFTConfig(packing=True)` (best-fit-decreasing packing, which
trl runs padding-free, completion-only loss), on the same base model, code_generation examples, LoRA config, batch,
steps, learning rate and seed, fp32, in this one process. Baseline: trl 1.16 `SFTTrainer` (and the plain peft loop
figure in TOOLING_NOTES).

    .venv/bin/python bench/train_throughput.py [--models tiny,smollm2] [--steps 6] [--batch 4] [--max-length 256]

Both trainers are measured by the same counters: a wrapper round each one's collator records every batch, and only
the batches actually trained on count (the dataloader collates one ahead). Printed per model: real (non-padding)
tokens per second over each `train()` call and over its median step, the padding share of the batches, the share of
tokens learnt from, the peak RSS during `train()` (sampled every 50 ms) and its growth, and the ratios ours/trl.
Each trainer first runs one untimed step; the timed runs then alternate (ours, trl, then trl, ours, ...) so that
drift in the machine's load falls on both.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import statistics
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import torch

from flywheel_pipelines.define import train as train_module
from flywheel_pipelines.define.chat import user_message
from flywheel_pipelines.define.packing import PackedCollator
from flywheel_pipelines.define.tracking import Tracking
from flywheel_pipelines.settings import TaskSettings, TrainingSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTRUCTION_DATASET = REPO_ROOT / "data" / "assets" / "instruction_dataset.parquet"
SAMPLES = REPO_ROOT / "data" / "samples"
SMOLLM2_GGUF = REPO_ROOT / "data" / "models" / "gguf" / "SmolLM2-135M-Instruct.Q4_1.gguf"
MODELS_DIR = REPO_ROOT / "data" / "models"


# --- what is measured, the same way for both trainers -------------------------------------------------------------


@dataclass
class BatchCounts:
    """Tokens in batches a collator handed the model: real (non-padding), all (batch tensor size), learnt (labels
    not -100)."""

    real: int = 0
    total: int = 0
    learnt: int = 0

    def __add__(self, other: BatchCounts) -> BatchCounts:
        return BatchCounts(self.real + other.real, self.total + other.total, self.learnt + other.learnt)


class CountingCollator:
    """Wraps a collator and records each training batch it builds. The dataloader (accelerate) collates one batch
    ahead of the one being trained on, so what was trained on is the first `steps x accumulation` batches, not all
    of them. Eval rows, which ours marks, are not recorded."""

    def __init__(self, collator: Callable[..., dict[str, torch.Tensor]]):
        self.collator = collator
        self.batches: list[BatchCounts] = []

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.collator(rows)
        if not any(r.get("eval") for r in rows):
            real = sum(len(r["input_ids"]) for r in rows)
            self.batches.append(BatchCounts(real, batch["input_ids"].numel(), int((batch["labels"] != -100).sum())))
        return batch

    def per_step(self, seconds: Sequence[float], accumulation: int) -> list[float]:
        """Real tokens per second of each optimizer step, from its batches and its StepClock interval."""
        return [
            sum(b.real for b in self.batches[i * accumulation : (i + 1) * accumulation]) / s
            for i, s in enumerate(seconds)
        ]

    def trained_on(self, batches: int) -> BatchCounts:
        if batches > len(self.batches):
            raise RuntimeError(f"{batches} batches trained on, but only {len(self.batches)} were collated")
        return sum(self.batches[:batches], BatchCounts())


class RssSampler:
    """Peak resident memory of this process while running: a thread samples it every `interval_s`."""

    def __init__(self, interval_s: float = 0.05):
        self.interval_s = interval_s
        self.process = psutil.Process()
        self.base = self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.base = self.peak = self.process.memory_info().rss
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, self.process.memory_info().rss)


class StepClock:
    """Seconds between the ends of consecutive optimizer steps (the first from the start of training): each holds
    one step's data loading, forward, backward, optimizer and the previous step's logging, but not train()'s setup
    or its final checkpoint. Their median is less swayed than the whole-call figure by short bursts of load from
    other processes (not by load that lasts most of a run)."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        clock = self
        self.intervals: list[float] = []

        class Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                clock.last = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                now = time.perf_counter()
                clock.intervals.append(now - clock.last)
                clock.last = now

        self.last = 0.0
        self.callback = Callback()


@dataclass
class Run:
    trainer: str
    seconds: float
    tokens_per_second: float
    counts: BatchCounts
    rss_peak: int
    rss_base: int
    batches: str  # trained on / collated
    step_tokens_per_second: list[float]  # per optimizer step: its real tokens / StepClock interval
    reported_tokens_per_second: float | None = None  # ours: TrainedAdapter.tokens_per_second, as train_lora counts
    reported_padding: float | None = None  # ours: TrainedAdapter.padding_share


@dataclass
class ModelResult:
    name: str
    runs: dict[str, list[Run]] = field(default_factory=lambda: {"ours": [], "trl": []})


def measured(
    trainer: str,
    collator: CountingCollator,
    clock: StepClock,
    sampler: RssSampler,
    steps: int,
    seconds: float,
    hp: TrainingSettings,
) -> Run:
    """One run's figures, from the same counters whichever trainer it was."""
    trained = steps * hp.gradient_accumulation_steps
    counts = collator.trained_on(trained)
    return Run(
        trainer=trainer,
        seconds=seconds,
        tokens_per_second=counts.real / seconds,
        counts=counts,
        rss_peak=sampler.peak,
        rss_base=sampler.base,
        batches=f"{trained}/{len(collator.batches)}",
        step_tokens_per_second=collator.per_step(clock.intervals, hp.gradient_accumulation_steps),
    )


def release_memory() -> None:
    """Between runs: free what the last trainer left, and hand freed heap back to the OS so RSS means something."""
    gc.collect()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


# --- data and models ----------------------------------------------------------------------------------------------


def code_generation_examples(count: int, task: str) -> pd.DataFrame:
    """The train split of one task: from the materialised instruction_dataset when `make run` has built it, else
    built here from the sample sources by the same code (crawl, extract, curate, build_task_examples)."""
    if INSTRUCTION_DATASET.exists():
        examples = pd.read_parquet(INSTRUCTION_DATASET)
    else:
        from flywheel_pipelines.define.distil.examples import build_task_examples
        from flywheel_pipelines.discover.api_specs import extract_api_endpoints
        from flywheel_pipelines.discover.code_units import extract_code_units
        from flywheel_pipelines.discover.crawl import crawl
        from flywheel_pipelines.discover.curate import curate
        from flywheel_pipelines.discover.sources import Snapshot, SourceSpec
        from flywheel_pipelines.discover.user_stories import extract_user_stories

        files = crawl(Snapshot("samples", SAMPLES), SourceSpec(name="samples", path=SAMPLES)).files
        units = extract_code_units(files).units
        endpoints, _ = extract_api_endpoints([f for f in files if f["language"] in ("yaml", "json")])
        stories = []
        for f in files:
            if f["language"] == "markdown":
                stories.extend(extract_user_stories(f["text"], f["source"], f["path"])[0])
        records = curate(units, endpoints, stories).records
        examples = pd.DataFrame(build_task_examples(task, records, TaskSettings()).examples)
    chosen = examples[(examples["task"] == task) & (examples["split"] == "train")]
    return chosen.sort_values("example_id").head(count).reset_index(drop=True)


def model_folder(name: str, scratch: Path) -> Path:
    if name == "tiny":
        from flywheel_pipelines_tests.tiny_model import build_tiny_chat_model

        corpus = [p.read_text() for p in sorted((REPO_ROOT / "flywheel_pipelines").rglob("*.py"))]
        return build_tiny_chat_model(scratch / "tiny-model", corpus)
    if name == "smollm2":
        from flywheel_pipelines.define.base_model import resolve_base_model

        return Path(resolve_base_model(str(SMOLLM2_GGUF), MODELS_DIR).path)
    raise ValueError(f"unknown model {name!r}: tiny or smollm2")


# --- the two trainers ---------------------------------------------------------------------------------------------


def run_ours(base: Path, examples: pd.DataFrame, hp: TrainingSettings, scratch: Path, tag: str) -> Run:
    from transformers import TrainerCallback

    collators: list[CountingCollator] = []
    sampler = RssSampler()
    clock = StepClock()

    class SampleRssDuringTrain(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            sampler.start()

        def on_train_end(self, args, state, control, **kwargs):
            sampler.stop()

    def counting_packed_collator(pad_token_id: int) -> CountingCollator:
        collators.append(CountingCollator(PackedCollator(pad_token_id)))
        return collators[-1]

    work = Path(tempfile.mkdtemp(prefix=f"ours-{tag}-", dir=scratch))
    tracking = Tracking(f"sqlite:///{work / 'mlflow.db'}", (work / "artifacts").as_uri(), "bench", "bench")
    # Counting only: train_lora builds its PackedCollator by this module-level name.
    train_module.PackedCollator = counting_packed_collator
    try:
        adapter = train_module.train_lora(
            base,
            examples,
            hp,
            work / "adapters",
            tracking,
            eval_examples=None,
            dtype="float32",
            kind="mix",
            dataset_version=f"bench-{tag}",
            tags={"flywheel.bench": "train_throughput"},
            callbacks=[SampleRssDuringTrain(), clock.callback],
        )
    finally:
        train_module.PackedCollator = PackedCollator
    run = measured("ours", collators[0], clock, sampler, adapter.steps, adapter.seconds, hp)
    run.reported_tokens_per_second, run.reported_padding = adapter.tokens_per_second, adapter.padding_share
    return run


def trl_dataset(examples: pd.DataFrame) -> Any:
    """The same examples as conversational prompt/completion, so trl applies the chat template like ours does."""
    from datasets import Dataset

    return Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": user_message(r.instruction, r.input)}],
                "completion": [{"role": "assistant", "content": r.output}],
            }
            for r in examples.itertuples()
        ]
    )


def run_trl(base: Path, examples: pd.DataFrame, hp: TrainingSettings, scratch: Path, tag: str) -> Run:
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(hp.seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    lora = LoraConfig(
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=train_module.target_modules_for(model.config.model_type, hp.target_modules),
        task_type="CAUSAL_LM",
    )
    config = SFTConfig(
        output_dir=str(Path(tempfile.mkdtemp(prefix=f"trl-{tag}-", dir=scratch))),
        max_length=hp.max_seq_length,
        packing=True,
        packing_strategy="bfd",  # trl turns padding-free on for it
        completion_only_loss=True,
        per_device_train_batch_size=hp.per_device_batch_size,
        gradient_accumulation_steps=hp.gradient_accumulation_steps,
        learning_rate=hp.learning_rate,
        lr_scheduler_type=hp.lr_scheduler,
        max_steps=hp.max_steps,
        warmup_steps=hp.warmup_steps,
        seed=hp.seed,
        # trl's own defaults differ from ours here; ours trains fp32 without recomputing activations.
        gradient_checkpointing=False,
        bf16=False,
        fp16=False,
        # The same logging and end-of-run checkpoint as ours (ours saves every eval_steps and at the end).
        logging_steps=1,
        save_strategy="steps",
        save_steps=hp.eval_steps,
        save_total_limit=2,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
    )
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=trl_dataset(examples), processing_class=tokenizer, peft_config=lora
    )
    trainer.remove_callback(PrinterCallback)
    clock = StepClock()
    trainer.add_callback(clock.callback)
    # trl refuses a custom collator with padding-free; wrapping its own after construction only counts.
    collator = trainer.data_collator = CountingCollator(trainer.data_collator)
    sampler = RssSampler()
    sampler.start()
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    sampler.stop()
    return measured("trl", collator, clock, sampler, trainer.state.global_step, seconds, hp)


TRAINERS: dict[str, Callable[..., Run]] = {"ours": run_ours, "trl": run_trl}


# --- the benchmark ------------------------------------------------------------------------------------------------


def bench_model(name: str, examples: pd.DataFrame, hp: TrainingSettings, repeats: int, scratch: Path) -> ModelResult:
    base = model_folder(name, scratch)
    result = ModelResult(name)
    warm_up = hp.model_copy(update={"max_steps": 1, "eval_steps": 1})
    for trainer in ("ours", "trl"):
        TRAINERS[trainer](base, examples, warm_up, scratch, f"{name}-warmup")
        release_memory()
    for repeat in range(repeats):
        order = ("ours", "trl") if repeat % 2 == 0 else ("trl", "ours")
        for trainer in order:
            run = TRAINERS[trainer](base, examples, hp, scratch, f"{name}-{repeat}")
            result.runs[trainer].append(run)
            print(
                f"  {name} repeat {repeat + 1} {trainer:4s}: {run.tokens_per_second:8.1f} tok/s "
                f"({run.counts.real} tokens in {run.seconds:.1f} s; batches trained on/collated {run.batches})",
                flush=True,
            )
            release_memory()
    return result


def summary(runs: list[Run]) -> dict[str, float]:
    real = sum(r.counts.real for r in runs)
    total = sum(r.counts.total for r in runs)
    return {
        "tok_s": real / sum(r.seconds for r in runs),
        "step_tok_s": statistics.median(t for r in runs for t in r.step_tokens_per_second),
        "padding": 1 - real / total if total else 0.0,
        "learnt": sum(r.counts.learnt for r in runs) / real if real else 0.0,
        "peak_mb": max(r.rss_peak for r in runs) / 2**20,
        "growth_mb": max(r.rss_peak - r.rss_base for r in runs) / 2**20,
    }


def report(result: ModelResult, hp: TrainingSettings) -> str:
    ours, trl = summary(result.runs["ours"]), summary(result.runs["trl"])
    repeats = len(result.runs["ours"])
    print(
        f"\n{result.name}: {hp.max_steps} steps x batch {hp.per_device_batch_size} x {hp.max_seq_length} tokens, "
        f"LoRA r={hp.lora_r} alpha={hp.lora_alpha}, fp32, {repeats} timed runs each"
    )
    print(
        f"{'trainer':15s} {'tok/s':>7s} {'runs':>13s} {'median step':>12s} {'padding':>8s} {'learnt':>7s} "
        f"{'peak RSS':>9s} {'RSS growth':>11s}"
    )
    for label, key, s in (("flywheel", "ours", ours), ("trl SFTTrainer", "trl", trl)):
        each = "/".join(f"{r.tokens_per_second:.0f}" for r in result.runs[key])
        print(
            f"{label:15s} {s['tok_s']:7.1f} {each:>13s} {s['step_tok_s']:12.1f} {s['padding']:8.1%} "
            f"{s['learnt']:7.0%} {s['peak_mb']:6.0f} MB {s['growth_mb']:8.0f} MB"
        )
    runs = zip(result.runs["ours"], result.runs["trl"], strict=True)
    pairs = ", ".join(f"{o.tokens_per_second / t.tokens_per_second:.2f}x" for o, t in runs)
    ratio, step_ratio = ours["tok_s"] / trl["tok_s"], ours["step_tok_s"] / trl["step_tok_s"]
    print(
        f"ratio ours/trl: {ratio:.2f}x over train() (per repeat: {pairs}); {step_ratio:.2f}x median step; goal >= 1.2"
    )
    reported_padding = statistics.mean(r.reported_padding or 0.0 for r in result.runs["ours"])
    reported_tok_s = statistics.mean(r.reported_tokens_per_second or 0.0 for r in result.runs["ours"])
    print(
        f"ours as train_lora reports it: {reported_tok_s:.1f} tok/s, padding {reported_padding:.1%}; padding goal < 5%"
    )
    return (
        f"{result.name}: ours {ours['tok_s']:.0f} tok/s, trl {trl['tok_s']:.0f} tok/s, ratio {ratio:.2f}x "
        f"(median step {step_ratio:.2f}x); padding {ours['padding']:.1%} vs {trl['padding']:.1%}; "
        f"peak RSS {ours['peak_mb'] / 1024:.2f} GB vs {trl['peak_mb'] / 1024:.2f} GB"
    )


def quiet() -> None:
    """Progress bars and deprecation notes from trl, transformers and datasets would bury the figures."""
    import datasets
    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning)
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,smollm2", help="comma-separated: tiny, smollm2")
    parser.add_argument("--task", default="code_generation")
    parser.add_argument("--examples", type=int, default=64, help="train-split examples, in example_id order")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--tiny-steps", type=int, default=30, help="steps for the tiny model, whose steps are short")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per trainer, alternating the order")
    args = parser.parse_args()
    quiet()

    examples = code_generation_examples(args.examples, args.task)
    print(f"examples: {len(examples)} {args.task} (train split); torch threads: {torch.get_num_threads()}")
    finals = []
    with tempfile.TemporaryDirectory(prefix="train-throughput-") as tmp:
        for name in args.models.split(","):
            steps = args.tiny_steps if name == "tiny" else args.steps
            hp = TrainingSettings(
                max_steps=steps,
                per_device_batch_size=args.batch,
                max_seq_length=args.max_length,
                eval_steps=steps,  # one checkpoint, at the end, for both trainers
                eval_examples=0,
                packing=True,
            )
            result = bench_model(name, examples, hp, args.repeats, Path(tmp))
            finals.append(report(result, hp))
            release_memory()
    print()
    for line in finals:
        print(line)


if __name__ == "__main__":
    main()
