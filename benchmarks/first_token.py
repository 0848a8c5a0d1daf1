"""Time to first token added by bothub over the model's own.

Starts the fake model server with a fixed time to first byte, then measures, for the same
question, (a) the openai SDK streaming straight from the model and (b) a browser-style client
streaming `POST /api/chat` from a real `bothub serve` process (SQLite, defaults). The difference
is what the hub adds: input checks, storage, history, retrieval (the question's embedding from
the fake server and a LanceDB search of the shipped sample), prompt, and the SSE hop.

    .venv/bin/python -m benchmarks.first_token [--requests 200] [--model-delay 0.2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from openai import OpenAI

from tests.fakes.openai_server import FakeOpenAI


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def model_ttft(fake: FakeOpenAI, n: int) -> list[float]:
    client = OpenAI(api_key=fake.api_key, base_url=fake.base_url, max_retries=0)
    times = []
    for i in range(n):
        started = time.perf_counter()
        stream = client.chat.completions.create(
            model="gpt-4o", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": f"How do I rotate my API key? ({i})"}])
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                times.append(time.perf_counter() - started)
                break
        stream.close()
    return times


def hub_ttft(url: str, n: int, *, same_conversation: bool, tag: str) -> list[float]:
    """`tag` keeps each run's questions apart from the others': the same first question in
    the same channel is answered from the answer cache, with no model and no stream."""
    times = []
    conversation_id = None
    with httpx.Client(timeout=30) as client:
        for i in range(n):
            body: dict[str, str] = {"message": f"How do I rotate my API key? ({tag} {i})"}
            if conversation_id:
                body["conversation_id"] = conversation_id
            started = time.perf_counter()
            first = None
            with client.stream("POST", f"{url}/api/chat", json=body) as response:
                for line in response.iter_lines():
                    if line.startswith("data: ") and conversation_id is None and same_conversation:
                        conversation_id = json.loads(line[6:]).get("conversation_id")
                    if first is None and line == "event: delta":
                        first = time.perf_counter() - started
            assert first is not None, "no delta arrived"
            times.append(first)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--model-delay", type=float, default=0.2,
                        help="the fake model's time to first byte, seconds")
    args = parser.parse_args()

    bothub = shutil.which("bothub", path=str(Path(sys.executable).parent)) or "bothub"
    with FakeOpenAI() as fake, tempfile.TemporaryDirectory() as data:
        fake.default_delay = args.model_delay
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        # One conversation of 200 quick turns is a flood to the rate limits: lift them, this
        # measures the answer path.
        config = Path(data) / "bench.yaml"
        config.write_text("limits:\n  rate:\n    user: {per_minute: 100000, burst: 100000}\n"
                          "    channel: {per_minute: 100000, burst: 100000}\n"
                          "    workspace: {per_minute: 100000, burst: 100000}\n",
                          encoding="utf-8")
        env = {**os.environ, "BOTHUB_DATA_DIR": data, "OPENAI_API_KEY": fake.api_key,
               "OPENAI_BASE_URL": fake.base_url, "BOTHUB_LOG_LEVEL": "WARNING",
               "BOTHUB_CONFIG": str(config)}
        server = subprocess.Popen([bothub, "serve", "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):  # up, and the sample knowledge base indexed
                try:
                    health = httpx.get(f"{url}/healthz", timeout=1).json()
                    last = health["components"]["knowledge"]["last_sync"]
                    if last is not None and last["status"] != "running":
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            hub_ttft(url, 10, same_conversation=False, tag="warm-up")  # imports, connections
            model = model_ttft(fake, args.requests)
            fresh = hub_ttft(url, args.requests, same_conversation=False, tag="fresh")
            threaded = hub_ttft(url, args.requests, same_conversation=True, tag="threaded")
        finally:
            server.terminate()
            server.wait(10)

    base = statistics.median(model)
    print(f"model's own time to first token (SDK direct), n={len(model)}: "
          f"p50 {base * 1000:.1f} ms, p99 {percentile(model, 99) * 1000:.1f} ms")
    for name, times in (("new conversation each time", fresh),
                        ("one growing conversation", threaded)):
        added = [(t - base) * 1000 for t in times]
        print(f"hub-added time to first token, {name}, n={len(times)}: "
              f"p50 {percentile(added, 50):.1f} ms, p95 {percentile(added, 95):.1f} ms, "
              f"p99 {percentile(added, 99):.1f} ms")


if __name__ == "__main__":
    main()
