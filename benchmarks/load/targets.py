"""The processes under load: `bothub serve` and the baseline, each started the same way.

Both get the platform driver's environment (the fake Slack's token, signing secret and Web API
URL, say) and the fake model's key and URL, listen on a free loopback port, and are waited for
until healthy. Their output goes to a log file in the run's temporary directory, shown if one
fails to start.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.fakes.openai_server import FakeOpenAI

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 120.0  # seconds: the hub indexes the shipped sample knowledge base first
# The load comes from few users in few channels: lift the hub's rate limits, this measures
# the answer path, not the flood protection.
UNLIMITED = ("limits:\n  rate:\n    user: {per_minute: 100000, burst: 100000}\n"
             "    channel: {per_minute: 100000, burst: 100000}\n"
             "    workspace: {per_minute: 100000, burst: 100000}\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Target:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def _pids(self) -> list[int]:
        pids = [self.process.pid]
        for children in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            pids.extend(int(p) for p in children.read_text().split())
        return pids

    def _proc(self, name: str) -> Iterator[str]:
        """/proc/<pid>/<name> of the process and of each child still alive."""
        for pid in self._pids():
            try:
                yield Path(f"/proc/{pid}/{name}").read_text()
            except OSError:
                continue

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the process and its children have used so far."""
        total = 0
        for stat in self._proc("stat"):
            fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")

    def peak_rss_bytes(self) -> int | None:
        """Peak resident memory of the process and its children (VmHWM from /proc)."""
        return self._memory("VmHWM:")

    def rss_bytes(self) -> int | None:
        """Resident memory of the process and its children now (VmRSS from /proc)."""
        return self._memory("VmRSS:")

    def _memory(self, field: str) -> int | None:
        total = 0
        for status in self._proc("status"):
            for line in status.splitlines():
                if line.startswith(field):
                    total += int(line.split()[1]) * 1024
        return total or None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start(name: str, workdir: Path, platform_env: Mapping[str, str], model: FakeOpenAI, *,
          native_streaming: bool = True) -> Target:
    """Start target `name` ("bothub" or "baseline") with the platform driver's environment and
    return it once it answers health checks."""
    port = free_port()
    env = {**os.environ, "OPENAI_API_KEY": model.api_key, "OPENAI_BASE_URL": model.base_url,
           **platform_env}
    if name == "bothub":
        data = workdir / "data"
        data.mkdir(exist_ok=True)
        config = workdir / "bench.yaml"
        config.write_text(UNLIMITED, encoding="utf-8")
        env.update(BOTHUB_DATA_DIR=str(data), BOTHUB_CONFIG=str(config),
                   BOTHUB_LOG_LEVEL="WARNING",
                   SLACK_NATIVE_STREAMING="true" if native_streaming else "false")
        bothub = shutil.which("bothub", path=str(Path(sys.executable).parent)) or "bothub"
        command = [bothub, "serve", "--port", str(port)]
    elif name == "baseline":
        command = [sys.executable, "-m", "benchmarks.load.baseline", "--port", str(port)]
    else:
        raise ValueError(f"unknown target {name!r}")
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=out,
                                   stderr=subprocess.STDOUT)
    target = Target(name, process, f"http://127.0.0.1:{port}", log)
    try:
        _wait_healthy(target)
    except BaseException:
        target.stop()
        raise
    return target


def _wait_healthy(target: Target) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if target.process.poll() is not None:
            raise RuntimeError(f"{target.name} exited with {target.process.returncode}:\n"
                               + target.log.read_text(errors="replace")[-3000:])
        try:
            response = httpx.get(f"{target.url}/healthz", timeout=2)
            if target.name != "bothub" and response.status_code == 200:
                return
            if target.name == "bothub":  # up, and the sample knowledge base indexed
                last = response.json()["components"]["knowledge"]["last_sync"]
                if last is not None and last["status"] != "running":
                    return
        except (httpx.TransportError, ValueError, KeyError, TypeError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{target.name} not healthy after {STARTUP_TIMEOUT:.0f} s:\n"
                       + target.log.read_text(errors="replace")[-3000:])
