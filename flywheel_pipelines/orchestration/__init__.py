"""The Dagster layer: assets, jobs, sensors and schedules over the plain-Python core. Only this package imports
Dagster."""
