"""`kesheng serve` as a real process: durable feedback across kill -9, SIGHUP reload, slow clients."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from kesheng.stores.feedback import FeedbackStore

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, model_dir: Path | None, feedback_db: Path, log: Path, *extra: str):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        model = ["--model", str(model_dir)] if model_dir is not None else []  # None: the default model
        command = [sys.executable, "-m", "kesheng", "serve", "--port", str(self.port), *model, "--feedback-db", str(feedback_db), *extra]
        self.log = log.open("ab")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ})
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, f"server exited: {log.read_text(errors='replace')[-2000:]}"
            try:
                if httpx.get(f"{self.url}/v1/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.1)

    def kill(self, sig=signal.SIGKILL) -> None:
        self.process.send_signal(sig)
        self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture
def server(model_dir, tmp_path):
    started = []

    def start(*extra, model=None):
        srv = Server(model or model_dir, tmp_path / "feedback.sqlite3", tmp_path / "server.log", *extra)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        if srv.process.poll() is None:
            srv.kill()


def test_acknowledged_feedback_survives_kill_9(server, tmp_path):
    srv = server()
    acknowledged = []
    for i in range(5):
        body = {"id": f"T-{i}", "text": f"第{i}次来电还是没解决", "tags": ["unresolved"], "sentiment": "negative"}
        response = httpx.post(f"{srv.url}/v1/feedback", json=body, timeout=10)
        assert response.status_code == 201
        acknowledged.append(response.json()["feedback_id"])
    srv.kill(signal.SIGKILL)  # no shutdown hooks, no chance to flush anything

    with FeedbackStore(tmp_path / "feedback.sqlite3") as store:
        assert [r.seq for r in store.records()] == acknowledged
    restarted = server()
    response = httpx.post(f"{restarted.url}/v1/feedback", json={"text": "重启后再提交", "tags": []}, timeout=10)
    assert response.status_code == 201 and response.json()["feedback_id"] == acknowledged[-1] + 1
    with FeedbackStore(tmp_path / "feedback.sqlite3") as store:
        assert [r.comment_id for r in store.records()] == [f"T-{i}" for i in range(5)] + [None]


def test_sighup_reloads_a_single_process_server(server, model_dir, tmp_path):
    import shutil

    served = tmp_path / "served"
    shutil.copytree(model_dir, served)
    srv = server(model=served)
    meta = json.loads((served / "meta.json").read_text(encoding="utf-8"))
    meta["model_version"] = "after-sighup"
    (served / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    srv.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while httpx.get(f"{srv.url}/v1/model", timeout=5).json()["model_version"] != "after-sighup":
        assert time.monotonic() < deadline, "SIGHUP did not reload the model"
        time.sleep(0.1)


def test_slow_and_abandoned_clients_do_not_block_others(server):
    srv = server()
    stalled = []
    for _ in range(20):  # more stalled connections than threads a naive server would have
        sock = socket.create_connection(("127.0.0.1", srv.port))
        sock.sendall(
            b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
            b'{"comments": [{"text": "'
        )
        stalled.append(sock)
    silent = socket.create_connection(("127.0.0.1", srv.port))  # connects, never sends a byte
    started = time.perf_counter()
    response = httpx.post(f"{srv.url}/v1/tag", json={"comments": [{"text": "等了很久"}]}, timeout=10)
    assert response.status_code == 200
    assert time.perf_counter() - started < 2.0
    for sock in stalled:
        sock.close()  # abandon mid-body
    silent.close()
    assert httpx.get(f"{srv.url}/v1/health", timeout=5).status_code == 200


def test_serve_refuses_a_missing_model_with_a_clear_message(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "kesheng", "serve", "--model", str(tmp_path / "absent"), "--port", str(_free_port())],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr


@pytest.mark.slow
def test_serve_without_a_model_option_serves_the_default_model(tmp_path):
    from kesheng.models import bundled_model_path
    from kesheng.models.base import read_model_version

    server = Server(None, tmp_path / "feedback.sqlite3", tmp_path / "server.log")
    try:
        assert httpx.get(f"{server.url}/v1/model", timeout=10).json()["model_version"] == read_model_version(bundled_model_path())
    finally:
        server.kill(signal.SIGTERM)


def test_serve_refuses_broken_weights_in_one_line(model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "weights.safetensors").write_bytes(b"\x00" * 10)
    result = subprocess.run(
        [sys.executable, "-m", "kesheng", "serve", "--model", str(broken), "--port", str(_free_port()), "--feedback-db", str(tmp_path / "f.sqlite3")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "weights" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_gracefully_with_the_same_exit_status_for_1_and_n_workers(server, workers):
    srv = server("--workers", str(workers))
    assert httpx.post(f"{srv.url}/v1/tag", json={"comments": [{"text": "等了很久"}]}, timeout=10).status_code == 200
    srv.process.send_signal(signal.SIGTERM)
    assert srv.process.wait(timeout=60) == 0
    srv.log.close()


def test_a_request_in_flight_at_sigterm_gets_its_answer(server):
    import threading

    srv = server()
    body = {"comments": [{"text": "等了很久没人回复，问题还是没解决。" * 110} for _ in range(50)]}  # 93,500 characters: ten chunks
    answers = []
    worker = threading.Thread(target=lambda: answers.append(httpx.post(f"{srv.url}/v1/tag", json=body, timeout=60)))
    worker.start()
    time.sleep(0.5)  # the request is being tagged
    srv.process.send_signal(signal.SIGTERM)
    worker.join(timeout=60)
    assert srv.process.wait(timeout=60) == 0
    assert answers and answers[0].status_code == 200 and len(answers[0].json()["results"]) == 50
    srv.log.close()
