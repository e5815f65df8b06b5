"""A real uvicorn server under a burst of concurrent clients (traffic to 127.0.0.1 only)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn

from conftest import SAO1_TINY
from longplay.pipelines import TextToMusicPipeline
from longplay.server import ServerSettings, create_app

QUEUE_SIZE = 4
CLIENTS = 20
REQUESTS_PER_CLIENT = 5
JOB = {"prompt": "busy drums", "duration_s": 0.5, "num_inference_steps": 2,
       "sampler": "dpmpp-2m"}
DEADLINE_S = 60.0
PAUSE_S = 0.2  # between a client's submissions, so the queue drains and refills


@pytest.fixture
def server_url() -> Iterator[str]:
    app = create_app(TextToMusicPipeline.from_pretrained(SAO1_TINY),
                     ServerSettings(model_name="tiny", queue_size=QUEUE_SIZE, retry_after_s=1))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # a free port, held from here on
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not shut down"


def _client(url: str, first_seed: int) -> list[tuple[int, dict, dict, float]]:
    """One client: REQUESTS_PER_CLIENT submissions, each accepted one read back at once.
    Returns (status, headers, body, seconds) per submission, seconds being the slowest
    answer of that round (the event loop must keep answering while jobs run)."""
    answers = []
    with httpx.Client(base_url=url, timeout=15) as http:
        for seed in range(first_seed, first_seed + REQUESTS_PER_CLIENT):
            sent = time.monotonic()
            response = http.post("/v1/generations", json={**JOB, "seed": seed})
            body = response.json()
            if response.status_code == 202:
                assert http.get(f"/v1/generations/{body['id']}").status_code == 200
            answers.append((response.status_code, dict(response.headers), body,
                            time.monotonic() - sent))
            time.sleep(PAUSE_S)
    return answers


@pytest.mark.slow
def test_burst_of_concurrent_clients(server_url):
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        futures = [pool.submit(_client, server_url, i * REQUESTS_PER_CLIENT)
                   for i in range(CLIENTS)]
        answers = [a for f in futures for a in f.result(timeout=DEADLINE_S)]
    assert len(answers) == CLIENTS * REQUESTS_PER_CLIENT

    accepted: list[str] = []
    refused = 0
    slowest_s = max(seconds for *_, seconds in answers)
    assert slowest_s < 5.0, f"an answer took {slowest_s:.1f} s: the event loop is blocked"
    for status, headers, body, _ in answers:
        if status == 202:
            assert body["status"] == "queued" and len(body["id"]) == 32
            accepted.append(body["id"])
        else:
            assert status == 429, (status, body)
            assert "full" in body["detail"] and int(headers["retry-after"]) == 1
            refused += 1
    assert len(set(accepted)) == len(accepted) >= QUEUE_SIZE
    assert refused > 0, "the burst never filled the queue"

    with httpx.Client(base_url=server_url, timeout=15) as http:
        pending = set(accepted)
        while pending:
            assert time.monotonic() - start < DEADLINE_S, f"{len(pending)} jobs never finished"
            for job_id in list(pending):
                body = http.get(f"/v1/generations/{job_id}").json()
                if body["status"] in ("succeeded", "failed"):
                    assert body["status"] == "succeeded", body["error"]
                    pending.discard(job_id)
            time.sleep(0.05)
        for job_id in accepted:
            audio = http.get(f"/v1/generations/{job_id}/audio")
            assert audio.status_code == 200 and audio.content[:4] == b"RIFF"
        health = http.get("/v1/health")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        assert health.json()["queue"] == {"length": 0, "capacity": QUEUE_SIZE, "running": 0}
    print(f"{len(accepted)} accepted, {refused} refused, slowest answer {slowest_s:.2f} s, "
          f"all done in {time.monotonic() - start:.1f} s")
