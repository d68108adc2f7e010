"""The flywheel's Dagster code location for a deployment: `flywheel_pipelines.definitions` with the executor that
$FLYWHEEL_EXECUTOR names — `multiprocess` (the default: a process per step on the run's machine), `k8s` (a pod per
step, dagster_k8s.k8s_job_executor) or `celery` (a Celery task per step, dagster_celery.celery_executor) — configured
from the run-config file $FLYWHEEL_EXECUTOR_CONFIG names (k8s_job_executor.yaml, celery_executor.yaml), if any; a
relative path is relative to the repository, whatever the working directory of the process that loads this file.

    dagster api grpc -f deploy/dagster/code_location.py -a defs -h 0.0.0.0 -p 4000   # a code server
    dagster dev -f deploy/dagster/code_location.py                                   # or the UI, locally
"""

import os
from pathlib import Path

import dagster as dg
import yaml

from flywheel_pipelines.definitions import build_definitions
from flywheel_pipelines.settings import load_settings

REPOSITORY = Path(__file__).resolve().parents[2]


def executor_from_env() -> dg.ExecutorDefinition:
    name = os.environ.get("FLYWHEEL_EXECUTOR", "multiprocess")
    if name == "multiprocess":
        executor = dg.multiprocess_executor
    elif name == "k8s":
        from dagster_k8s import k8s_job_executor as executor
    elif name == "celery":
        from dagster_celery import celery_executor as executor
    else:
        raise ValueError(f"FLYWHEEL_EXECUTOR={name!r}: expected multiprocess, k8s or celery")
    if config_file := os.environ.get("FLYWHEEL_EXECUTOR_CONFIG"):
        run_config = yaml.safe_load((REPOSITORY / config_file).read_text())  # an absolute path stays as it is
        executor = executor.configured(run_config["execution"]["config"], name=executor.name)
    return executor


defs = dg.Definitions.merge(build_definitions(load_settings()), dg.Definitions(executor=executor_from_env()))
