"""A real PostgreSQL server for the tests: one per test session (bench/pg_server.py), a fresh database per test.

Skipped, saying why, only where the server or psycopg cannot be had (scripts/setup.sh installs both).
"""

from __future__ import annotations

import itertools

import pytest

from bench.pg_server import PostgresUnavailable, create_database, temporary_postgres

_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres_server():
    """The URL of a throwaway server's 'postgres' database, started on first use and stopped at the end."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'instrument-id[serve]')")
    try:
        with temporary_postgres() as url:
            yield url
    except PostgresUnavailable as exc:
        pytest.skip(f"no PostgreSQL server can be started here: {exc}")


@pytest.fixture
def postgres_url(postgres_server):
    """A database of its own for this test."""
    return create_database(postgres_server, f"test_{next(_databases)}")
