"""Wall-clock timing for benchmarks and reports."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of fn() over `repeats` calls, in ms, after one untimed warm-up call (caches, graph tracing)."""
    fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)
