"""A real PostgreSQL server for the deployment tests: the one on 127.0.0.1:5432 when it answers, else a private one
this session starts from the PostgreSQL binaries when they are installed; each test gets a fresh database."""

from __future__ import annotations

import glob
import os
import pwd
import runpy
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from sqlalchemy import create_engine, text

from flywheel_pipelines_tests.conftest import REPO_ROOT

LOOPBACK_POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    engine = create_engine(f"{url}/postgres", connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return True
    except Exception:
        return False
    finally:
        engine.dispose()


def _postgres_binaries() -> str | None:
    found = shutil.which("pg_ctl")
    if found:
        return os.path.dirname(os.path.realpath(found))
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return os.path.dirname(candidates[-1]) if candidates else None


@contextmanager
def private_postgres(bindir: str) -> Iterator[str]:
    """A throw-away PostgreSQL server on a free loopback port, its cluster in a temporary folder. PostgreSQL refuses
    to run as root: as root, it runs as the `postgres` system user."""
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = tempfile.mkdtemp(prefix="flywheel-postgres-")
    if as_user:
        account = pwd.getpwnam("postgres")
        os.chown(data, account.pw_uid, account.pw_gid)
    port = free_port()
    pg = {"check": True, "capture_output": True, "timeout": 60}
    try:
        initdb = [f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale"]
        subprocess.run([*as_user, *initdb], **pg)
        options = f"-p {port} -c listen_addresses=127.0.0.1 -k {data}"
        subprocess.run(
            [*as_user, f"{bindir}/pg_ctl", "-D", data, "-o", options, "-l", f"{data}/log", "-w", "start"], **pg
        )
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The SQLAlchemy URL of a PostgreSQL server (without a database) where user `postgres` may create databases."""
    if _answers(LOOPBACK_POSTGRES):
        yield LOOPBACK_POSTGRES
        return
    bindir = _postgres_binaries()
    if bindir is None or (os.geteuid() == 0 and not _has_account("postgres")):
        pytest.skip(
            "PostgreSQL is unreachable on 127.0.0.1:5432 and cannot be started here (no pg_ctl, or root "
            "without a `postgres` account)"
        )
    with private_postgres(bindir) as url:
        yield url


def _has_account(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.fixture
def postgres_database(postgres_server: str) -> Iterator[str]:
    """The SQLAlchemy URL of a fresh database, dropped afterwards."""
    name = f"flywheel_deploy_{uuid.uuid4().hex[:10]}"
    admin = create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{postgres_server}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


CODE_LOCATION = REPO_ROOT / "deploy" / "dagster" / "code_location.py"


def load_code_location() -> dg.Definitions:
    """deploy/dagster/code_location.py's `defs`, built from the current environment ($FLYWHEEL_EXECUTOR, ...)."""
    return runpy.run_path(str(CODE_LOCATION))["defs"]


def code_location_job(job_name: str, working_directory: Path) -> ReconstructableJob:
    """A job of deploy/dagster/code_location.py as other processes (step processes, Celery workers) rebuild it, built
    from the current environment: Dagster keeps a loaded code file (and the last job built from a pointer) for the
    life of the process, so a fresh module and a pointer of this test's own (`working_directory`) keep one test's
    $FLYWHEEL_EXECUTOR from becoming the next one's."""
    sys.modules.pop(CODE_LOCATION.stem, None)
    repository = ReconstructableRepository.for_file(str(CODE_LOCATION), "defs", str(working_directory))
    return repository.get_reconstructable_job(job_name)
