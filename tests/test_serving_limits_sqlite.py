"""The default rate-limit store, a SQLite file (serving/rate_limit_sqlite.py), as gunicorn uses it: a RateLimiter built
in one process, then forked processes charging the same client at once. They grant exactly the limit between them;
a named file is shared by limiters that name it; the private folder outlives a fork's exit and goes with its maker;
a file locked past the store timeout answers 503, not a hang."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("limits")

from serving.errors import ApiError  # noqa: E402
from serving.rate_limits import STORE_TIMEOUT_SECONDS, RateLimiter, RoleLimits  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 60
PROCESSES = 4
TRIES_PER_PROCESS = 40  # 160 tries at once against a limit of 60


def limiter(storage_uri: str = "sqlite://", requests: str = f"{LIMIT}/hour") -> RateLimiter:
    """A RateLimiter whose client role has only a request budget."""
    return RateLimiter({"client": RoleLimits(requests=requests)}, storage_uri)


def granted(rate_limiter: RateLimiter, tries: int) -> int:
    """How many of `tries` requests of client alice the limiter lets through (the others get 429)."""
    count = 0
    for _ in range(tries):
        try:
            rate_limiter.charge("client", "requests", "alice")
            count += 1
        except ApiError as exc:
            assert exc.status == 429, exc.message
    return count


def granted_in_forks(rate_limiters: list[RateLimiter]) -> list[int]:
    """Fork one process per limiter given (as gunicorn forks its workers), all charging at once; what each granted."""
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(len(rate_limiters)), context.SimpleQueue()

    def worker(rate_limiter: RateLimiter) -> None:
        start.wait()
        results.put(granted(rate_limiter, TRIES_PER_PROCESS))

    processes = [context.Process(target=worker, args=(rate_limiter,)) for rate_limiter in rate_limiters]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    return [results.get() for _ in processes]


def test_forked_workers_of_one_limiter_grant_exactly_the_limit_between_them():
    shared = limiter()
    assert shared.scope() == "replica" and granted(shared, 1) == 1  # the maker's own connection, open at the fork
    counts = granted_in_forks([shared] * PROCESSES)
    assert sum(counts) == LIMIT - 1, counts
    assert granted(shared, 1) == 0  # and the maker sees what the forks counted


def test_memory_storage_counts_per_process():
    counts = granted_in_forks([limiter("memory://")] * PROCESSES)
    assert counts == [TRIES_PER_PROCESS] * PROCESSES  # each under the limit on its own: 160 of 60 got through


def test_a_named_file_is_shared_by_every_limiter_naming_it(tmp_path):
    uri = f"sqlite://{tmp_path / 'limits.sqlite'}"
    replicas = [limiter(uri), limiter(uri)]  # two replicas on one host, each with its own limiter object
    assert {replica.scope() for replica in replicas} == {"host"}
    counts = granted_in_forks(replicas * 2)
    assert sum(counts) == LIMIT, counts
    assert limiter().scope() == "replica" and granted(limiter(), 1) == 1  # a private file is not that one


def test_the_private_folder_outlives_a_forks_exit_and_goes_with_its_maker(tmp_path):
    script = (
        "import os, sys\n"
        "from serving.rate_limits import RateLimiter, RoleLimits\n"
        "limiter = RateLimiter({'client': RoleLimits(requests='5/hour')})\n"
        "limiter.charge('client', 'requests', 'alice')\n"
        "folder = os.path.dirname(limiter.storage_uri[len('sqlite://'):])\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    limiter.charge('client', 'requests', 'alice')\n"
        "    sys.exit(0)\n"  # a normal exit: the child runs the atexit hooks it inherited
        "os.waitpid(pid, 0)\n"
        "print(folder, os.path.isfile(os.path.join(folder, 'rate_limits.sqlite')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    folder, present_after_fork_exit = done.stdout.split()
    assert present_after_fork_exit == "True"
    assert Path(folder).name.startswith("instrument-id-limits-") and not Path(folder).exists()


def test_a_file_locked_past_the_store_timeout_answers_503(tmp_path):
    path = tmp_path / "limits.sqlite"
    shared = limiter(f"sqlite://{path}")
    assert shared.reachable() and path.is_file()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holding the write lock, e.g. stuck
    try:
        started = time.monotonic()
        with pytest.raises(ApiError) as refused:
            shared.charge("client", "requests", "alice")
        waited_s = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert refused.value.status == 503 and "rate-limit store cannot be reached" in refused.value.message
    assert refused.value.headers["Retry-After"] and STORE_TIMEOUT_SECONDS <= waited_s < STORE_TIMEOUT_SECONDS + 3
    assert granted(shared, 1) == 1  # the lock released, it counts again


def test_a_folder_that_does_not_exist_is_unreachable(tmp_path):
    assert not limiter(f"sqlite://{tmp_path / 'missing' / 'limits.sqlite'}").reachable()
