"""The feedback sensor: enough new accept / reject / edit events request a retraining run, exactly once."""

import dagster as dg

from flywheel_pipelines.orchestration.jobs import retrain
from flywheel_pipelines.orchestration.resources import FeedbackStoreResource


def build_feedback_sensor(min_new_events: int, interval_seconds: int = 60) -> dg.SensorDefinition:
    @dg.sensor(
        name="feedback_sensor",
        job=retrain,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Requests `retrain` when at least {min_new_events} new feedback events arrived.",
    )
    def feedback_sensor(context: dg.SensorEvaluationContext, feedback_store: FeedbackStoreResource):
        # The cursor is the id of the newest event already used to trigger a run.
        cursor = int(context.cursor or 0)
        store = feedback_store.store()
        try:
            new, newest = store.new_events_since(cursor)
        finally:
            store.dispose()
        if new < min_new_events:
            return dg.SkipReason(f"{new} new feedback events since event {cursor}; {min_new_events} needed")
        context.update_cursor(str(newest))
        return dg.RunRequest(
            run_key=f"feedback-{cursor + 1}-{newest}",  # the same events can never trigger twice
            tags={"flywheel/trigger": "feedback", "flywheel/feedback_events": f"{cursor + 1}..{newest}"},
        )

    return feedback_sensor
