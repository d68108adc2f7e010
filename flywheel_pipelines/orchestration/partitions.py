"""Each configured source is one dynamic partition: added and removed as flywheel.yaml changes."""

import dagster as dg

sources_partitions = dg.DynamicPartitionsDefinition(name="sources")

# Feedback by day of arrival (UTC): a day's partition is final once the day is over.
FEEDBACK_DAYS_START = "2026-01-01"
FEEDBACK_TIMEZONE = "UTC"
# end_offset=1: today is a partition too, so feedback can retrain the day it arrives.
feedback_days = dg.DailyPartitionsDefinition(start_date=FEEDBACK_DAYS_START, timezone=FEEDBACK_TIMEZONE, end_offset=1)
