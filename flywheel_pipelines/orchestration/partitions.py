"""Each configured source is one dynamic partition: added and removed as flywheel.yaml changes."""

import dagster as dg

sources_partitions = dg.DynamicPartitionsDefinition(name="sources")
