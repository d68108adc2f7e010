"""deploy/accelerate/multi_gpu.yaml is an accelerate config that means what deploy/README.md says: by hand it launches
`flywheel train` as one DDP process per GPU, and installed as accelerate's default config it fills in what the
`lora_adapter` asset's own `accelerate launch --multi_gpu --num_processes N` leaves out, N staying the asset's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from accelerate.commands import launch as accelerate_launch
from accelerate.commands.config import config_args
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.utils import DistributedType

from flywheel_pipelines.define import adapters
from flywheel_pipelines.settings import TrainingSettings
from flywheel_pipelines_tests.conftest import REPO_ROOT

CONFIG = REPO_ROOT / "deploy" / "accelerate" / "multi_gpu.yaml"


def launch_args(argv: list[str]):
    """`accelerate launch <argv>` as accelerate resolves it before starting any process."""
    args = accelerate_launch.launch_command_parser().parse_args(argv)
    resolved, _, _ = accelerate_launch._validate_launch_command(args)
    return resolved


def test_it_is_a_multi_gpu_config_of_one_machine():
    config = load_config_from_file(str(CONFIG))
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type == DistributedType.MULTI_GPU
    assert (config.num_machines, config.num_processes, config.gpu_ids) == (1, 4, "all")
    assert config.mixed_precision == "no"  # precision is base_model.dtype's, as in the asset


def test_by_hand_it_starts_flywheel_train_on_four_gpu_processes():
    args = launch_args(["--config_file", str(CONFIG), "-m", "flywheel_pipelines.cli", "train"])
    assert args.multi_gpu and not args.cpu
    assert (args.num_processes, args.num_machines, args.gpu_ids) == (4, 1, "all")
    assert args.module and args.training_script == "flywheel_pipelines.cli" and args.training_script_args == ["train"]


def test_as_the_default_config_it_completes_the_assets_launch_and_num_processes_stays_the_assets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    launched: list[list[str]] = []

    def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
        launched.append(command)
        output = Path(command[command.index("--output") + 1])
        output.write_text("[]")
        return subprocess.CompletedProcess(command, 0, "", "")

    # What the asset runs on a GPU machine, captured instead of started.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(adapters.subprocess, "run", run)
    hp = TrainingSettings(num_processes=8)
    adapters.launch_training(tmp_path / "flywheel.yaml", hp, "http://mlflow:5000", {}, log=lambda _: None)
    (command,) = launched
    assert command[1:3] == ["-m", "accelerate.commands.launch"]

    # Installed as $HF_HOME/accelerate/default_config.yaml: where both modules look for it.
    monkeypatch.setattr(accelerate_launch, "default_config_file", str(CONFIG))
    monkeypatch.setattr(config_args, "default_config_file", str(CONFIG))
    args = launch_args(command[3:])
    assert args.multi_gpu and args.num_processes == 8  # training.num_processes wins over the file's 4
    assert args.gpu_ids == "all" and args.mixed_precision == "no"  # the rest comes from the file
    assert args.training_script == "flywheel_pipelines.cli" and args.training_script_args[-2:] == [
        "--output",
        command[command.index("--output") + 1],
    ]
