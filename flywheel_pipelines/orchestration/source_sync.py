"""Keep the `sources` partitions equal to the sources in flywheel.yaml; a removed source leaves nothing behind."""

import dagster as dg

from flywheel_pipelines.discover.quarantine import QuarantineStore
from flywheel_pipelines.discover.sources import remove_clone
from flywheel_pipelines.orchestration.partitions import sources_partitions
from flywheel_pipelines.orchestration.resources import AssetFiles
from flywheel_pipelines.settings import Settings


def partition_changes(settings: Settings, instance: dg.DagsterInstance) -> tuple[list[str], list[str]]:
    """(sources to add as partitions, partitions whose source is gone), in config order."""
    configured = [s.name for s in settings.sources]
    existing = instance.get_dynamic_partitions(sources_partitions.name)
    return [n for n in configured if n not in existing], [n for n in existing if n not in configured]


def forget_sources(settings: Settings, names: list[str]) -> None:
    """Delete what removed sources left: their clone, their stored partitions and their quarantine rows."""
    files = AssetFiles(settings.assets_path)
    store = QuarantineStore(settings.quarantine_database_url)
    try:
        for name in names:
            remove_clone(name, settings.data_path / "sources")
            files.forget_partition(name)
            store.forget_source(name)
    finally:
        store.dispose()


def sync_source_partitions(settings: Settings, instance: dg.DagsterInstance) -> tuple[list[str], list[str]]:
    added, removed = partition_changes(settings, instance)
    if added:
        instance.add_dynamic_partitions(sources_partitions.name, added)
    for name in removed:
        instance.delete_dynamic_partition(sources_partitions.name, name)
    forget_sources(settings, removed)
    return added, removed
