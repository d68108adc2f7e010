"""One full turn of the flywheel from the command line (`flywheel turn`, what `make run` does): sync the source
partitions, discover every source, then train — each a run in the project's Dagster instance."""

import dagster as dg

from flywheel_pipelines.orchestration.checks import PROMOTION_GATE
from flywheel_pipelines.orchestration.source_sync import sync_source_partitions
from flywheel_pipelines.settings import Settings


def run_turn(settings: Settings, instance: dg.DagsterInstance | None = None, log=print) -> bool:
    """True when training succeeded; a source that fails to discover is reported and the others go on."""
    if instance is None:
        with dg.DagsterInstance.get() as project_instance:
            return run_turn(settings, project_instance, log)
    from flywheel_pipelines.definitions import build_definitions

    defs = build_definitions(settings)
    added, removed = sync_source_partitions(settings, instance)
    if added or removed:
        log(f"sources: added {added or 'none'}, removed {removed or 'none'}")
    discover = defs.resolve_job_def("discover")
    failed = []
    for source in settings.sources:
        result = discover.execute_in_process(
            instance=instance,
            partition_key=source.name,
            raise_on_error=False,
            tags={"flywheel/trigger": "turn"},
        )
        log(f"discover {source.name}: {'ok' if result.success else 'FAILED'} (run {result.run_id})")
        if not result.success:
            failed.append(source.name)
            for event in result.all_events:
                if event.is_step_failure and event.step_failure_data.error is not None:
                    log(f"  {event.step_key}: {event.step_failure_data.error.message.strip()}")
    if len(failed) == len(settings.sources):
        log("every source failed to discover: nothing to train on")
        return False
    result = defs.resolve_job_def("train").execute_in_process(
        instance=instance, raise_on_error=False, tags={"flywheel/trigger": "turn"}
    )
    if result.success:
        log(f"train: ok (run {result.run_id})")
        return True
    refusal = _promotion_refusal(result)
    failed_steps = {e.step_key for e in result.all_events if e.is_step_failure}
    if refusal is not None and failed_steps == {refusal[0]}:
        log(f"train: ok, the candidate was refused promotion and the champion kept (run {result.run_id})")
        for reason in refusal[1]:
            log(f"  {reason}")
        return True
    log(f"train: FAILED (run {result.run_id})")
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error is not None:
            log(f"  {event.step_key}: {event.step_failure_data.error.message.strip()}")
    return False


def _promotion_refusal(result) -> tuple[str, list[str]] | None:
    """(step key, reasons) of a failed promotion gate in a run's events, if it failed."""
    for event in result.all_events:
        if event.event_type_value != "ASSET_CHECK_EVALUATION":
            continue
        evaluation = event.event_specific_data
        if evaluation.check_name == PROMOTION_GATE and not evaluation.passed:
            reasons = evaluation.metadata.get("reasons")
            text = reasons.value if reasons is not None else ""
            return event.step_key, [line.removeprefix("- ") for line in text.splitlines() if line]
    return None
