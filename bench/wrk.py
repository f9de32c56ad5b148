"""wrk as the load generator of `bench serve`: a Lua script that POSTs one audio file, and the parser of its output.

wrk threads each run their own Lua state, so the script counts requests sent and answer statuses per thread and
done() adds up the thread tables collected in setup() (wrk's documented pattern), then prints one JSON line.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from instrument_id.errors import InstrumentIdError

JSON_MARKER = "WRK_JSON "
TIMEOUT_SECONDS = 5
SOCKET_ERRORS = ("connect", "read", "write", "timeout")

POST_FILE_LUA = r"""-- wrk script (instrument-id bench serve): POST one file; args: path, file, content type[, API key].
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[2], "rb"))
  wrk.method = "POST"
  wrk.path = args[1]
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["Content-Type"] = args[3]
  if args[4] and args[4] ~= "" then
    wrk.headers["X-API-Key"] = args[4]
  end
  prepared = wrk.format()
  sent = 0
  statuses = {}
end

function request()
  sent = sent + 1
  return prepared
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local sent_total, counts = 0, {}
  for _, thread in ipairs(threads) do
    sent_total = sent_total + thread:get("sent")
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%s": %d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"duration_us": %d, "requests": %d, "bytes": %d, "sent": %d, "statuses": {%s}, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.duration, summary.requests, summary.bytes, sent_total, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: answers by status, socket errors, requests sent, latency percentiles."""

    duration_seconds: float
    requests: int  # answers received, any status
    sent: int  # requests written; those beyond `requests` were in flight when wrk stopped
    statuses: dict[int, int]
    socket_errors: dict[str, int]
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    latency_max_ms: float

    @property
    def requests_per_second(self) -> float:
        """Answers per second (wrk's own Requests/sec)."""
        return self.requests / self.duration_seconds if self.duration_seconds > 0 else 0.0

    @property
    def ok(self) -> int:
        """Answers with status 200."""
        return self.statuses.get(200, 0)

    @property
    def errors(self) -> int:
        """Answers other than 200 plus connect, read, write errors and timeouts."""
        return self.requests - self.ok + sum(self.socket_errors.values())

    @property
    def unanswered(self) -> int:
        """Requests sent that got no answer before wrk stopped (the server may still have served them)."""
        return max(self.sent - self.requests, 0)


def parse_wrk_output(text: str) -> WrkResult:
    """The WrkResult of wrk's stdout when run with POST_FILE_LUA (its done() prints the WRK_JSON line)."""
    lines = [line for line in text.splitlines() if line.startswith(JSON_MARKER)]
    if len(lines) != 1:
        raise InstrumentIdError(f"wrk output: expected one {JSON_MARKER.strip()} line from the Lua script, found {len(lines)}")
    try:
        data = json.loads(lines[0][len(JSON_MARKER):])
        latency_us = data["latency_us"]
        result = WrkResult(
            duration_seconds=data["duration_us"] / 1e6, requests=int(data["requests"]),
            sent=int(data["sent"]) - 1,  # wrk calls thread 0's request() once more to verify the script's request
            statuses={int(status): int(n) for status, n in data["statuses"].items()},
            socket_errors={name: int(data["errors"][name]) for name in SOCKET_ERRORS},
            latency_p50_ms=latency_us["p50"] / 1e3, latency_p90_ms=latency_us["p90"] / 1e3,
            latency_p99_ms=latency_us["p99"] / 1e3, latency_max_ms=latency_us["max"] / 1e3,
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InstrumentIdError(f"wrk output: malformed {JSON_MARKER.strip()} line ({exc}): {lines[0][:200]}") from None
    if sum(result.statuses.values()) != result.requests:
        raise InstrumentIdError(
            f"wrk output: the Lua script counted {sum(result.statuses.values())} answers but wrk {result.requests}"
        )
    return result


def find_wrk() -> str:
    """The wrk executable, or InstrumentIdError saying how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise InstrumentIdError("wrk is not installed (Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk)")
    return path


def run_wrk(base_url: str, route: str, body_file: Path, lua_file: Path, clients: int, seconds: int,
            content_type: str = "audio/wav", api_key: str | None = None) -> tuple[WrkResult, str]:
    """POST body_file to base_url + route from `clients` connections for `seconds` (with X-API-Key when given);
    (result, wrk's stdout)."""
    command = [
        find_wrk(), f"-t{min(clients, 2)}", f"-c{clients}", f"-d{seconds}s", "--timeout", f"{TIMEOUT_SECONDS}s",
        "--latency", "-s", str(lua_file), base_url, "--", route, str(body_file), content_type,
        *([api_key] if api_key else []),
    ]
    try:
        # wrk stops itself after `seconds`; the margin covers its start and the in-flight answers it waits out
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 2 * TIMEOUT_SECONDS + 10)
    except subprocess.TimeoutExpired:
        raise InstrumentIdError(f"wrk against {base_url}{route} ran past {seconds} s and was stopped") from None
    if done.returncode != 0:
        raise InstrumentIdError(f"wrk against {base_url}{route} failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return parse_wrk_output(done.stdout), done.stdout
