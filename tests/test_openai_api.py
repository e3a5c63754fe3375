"""The OpenAI-compatible API (`server/openai_api.py`) through the real `openai` client, on a
loopback port: steering per request, streaming, uploads, and every bad input refused."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import uvicorn

from alignez_core.axes.axis import ASSETS, preset
from alignez_core.axes.queries import read_queries
from alignez_core.fitting.fit import FitConfig, fit_axis
from alignez_core.measure.judges import tone
from alignez_core.server import AxisStore, ServedModel, openai_app
from tests.tiny import make_model, wait_until_idle


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """uvicorn serving `openai_app` in a thread, as `alignez serve` does in a process."""

    def __init__(self, lm) -> None:
        self.served = ServedModel(lm, batching=True)
        self.store = AxisStore(max_uploads=3)
        port = free_port()
        config = uvicorn.Config(openai_app(self.served, self.store), host="127.0.0.1", port=port,
                                log_level="warning")  # fmt: skip
        self.uvicorn = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.uvicorn.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}/v1"
        self.client = openai.OpenAI(base_url=self.url, api_key="unused", max_retries=0)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.uvicorn.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.uvicorn.should_exit = True
        self.thread.join(timeout=30)
        if self.served.scheduler is not None:
            self.served.scheduler.close()

    def upload(self, data: bytes, filename: str = "axis.safetensors") -> httpx.Response:
        return httpx.post(f"{self.url}/axes", files={"file": (filename, data)}, timeout=60)

    def chat(self, prompt: str, steer: dict | None = None, **options) -> str:
        extra = {"extra_body": {"steer": steer}} if steer else {}
        reply = self.client.chat.completions.create(
            model=self.served.lm.model_id, messages=[{"role": "user", "content": prompt}],
            max_tokens=options.pop("max_tokens", 16), **options, **extra,
        )  # fmt: skip
        return reply.choices[0].message.content or ""

    def streamed_chat(self, prompt: str, steer: dict | None = None, max_tokens: int = 16) -> str:
        extra = {"extra_body": {"steer": steer}} if steer else {}
        stream = self.client.chat.completions.create(
            model=self.served.lm.model_id, messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens, stream=True, **extra,
        )  # fmt: skip
        return "".join(chunk.choices[0].delta.content or "" for chunk in stream)


@pytest.fixture(scope="module")
def server(tiny_llama):
    with Server(tiny_llama) as running:
        yield running


@pytest.fixture(scope="module")
def axis_name(server, second_pack):
    """The concise axis uploaded (its ±2 moves the tiny model's greedy answers)."""
    reply = server.upload(second_pack.to_bytes(), "concise.safetensors")
    assert reply.status_code == 200, reply.text
    return reply.json()["id"]


def test_models_names_the_loaded_model_and_refuses_another(server):
    assert [m.id for m in server.client.models.list()] == [server.served.lm.model_id]
    with pytest.raises(openai.NotFoundError, match="has tiny-llama loaded"):
        server.client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )


def test_a_steered_stream_differs_from_the_unsteered_one(server, axis_name, second_pack):
    assert axis_name.startswith(f"{second_pack.name}@")
    plain = server.streamed_chat("tell me a story")
    steered = server.streamed_chat("tell me a story", {axis_name: 2.0})
    assert steered != plain
    assert server.streamed_chat("tell me a story", {axis_name: 0.0}) == plain
    assert server.chat("tell me a story", {axis_name: 2.0}) == steered  # stream == whole
    wait_until_idle(server.served.lm)


def test_the_whole_conversation_reaches_the_model(server):
    alone = server.chat("and then?")
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "tell me a story"},
        {"role": "assistant", "content": "Once upon a time."},
        {"role": "user", "content": "and then?"},
    ]
    reply = server.client.chat.completions.create(
        model=server.served.lm.model_id,
        messages=messages,
        max_tokens=16,  # type: ignore[arg-type]
    )
    assert reply.choices[0].message.content != alone
    assert reply.usage is not None and reply.usage.prompt_tokens > len("and then?")


def test_a_stream_can_end_with_its_usage(server):
    whole = server.client.chat.completions.create(
        model=server.served.lm.model_id, messages=[{"role": "user", "content": "tell me"}],
        max_tokens=16,
    )  # fmt: skip
    stream = server.client.chat.completions.create(
        model=server.served.lm.model_id, messages=[{"role": "user", "content": "tell me"}],
        max_tokens=16, stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert all(chunk.usage is None for chunk in chunks[:-1])
    last = chunks[-1]
    assert last.choices == [] and last.usage == whole.usage
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == (
        whole.choices[0].message.content
    )


def test_raw_completions_and_stop_strings(server):
    full = server.client.completions.create(
        model=server.served.lm.model_id, prompt="Once", max_tokens=12
    )
    text = full.choices[0].text
    assert text and full.choices[0].finish_reason in ("stop", "length")
    stop = text[3:5]
    cut = server.client.completions.create(
        model=server.served.lm.model_id, prompt="Once", max_tokens=12, stop=[stop]
    )
    assert cut.choices[0].text == text[: text.find(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_neighbours_steering_never_reaches_a_request(server, axis_name):
    """An unsteered request answered beside differently steered ones, twice: the same text."""

    def burst(strength: float) -> str:
        with ThreadPoolExecutor(6) as pool:
            target = pool.submit(server.chat, "what is rain")
            for i in range(5):
                pool.submit(server.chat, f"prompt {i}", {axis_name: strength * (-1) ** i})
            return target.result()

    assert burst(2.0) == burst(-1.5) == server.chat("what is rain")


def test_uploads_are_named_by_content_and_capped(server, axis_name, tiny_pack, second_pack):
    again = server.upload(second_pack.to_bytes(), "whatever.safetensors")
    assert again.json()["id"] == axis_name  # the same file is the same axis
    other = server.upload(tiny_pack.to_bytes())
    assert other.status_code == 200 and other.json()["id"] not in (axis_name,)
    listed = httpx.get(f"{server.url}/axes").json()["data"]
    assert {axis_name, other.json()["id"]} <= {a["id"] for a in listed}


def test_bad_uploads_are_refused_and_nothing_is_lost(server, axis_name, tiny_llama):
    narrow = make_model(hidden=32)
    foreign = fit_axis(narrow, preset("cheerful"), ["a?", "b?"], FitConfig(n_queries=2))
    cases = [
        (foreign.to_bytes(), "hidden size 32"),
        (b"\x80\x04\x95 pickled", "pickle"),
        (b"not an axis at all", "not a valid safetensors"),
        (b"", "empty"),
    ]
    for data, message in cases:
        reply = server.upload(data)
        assert reply.status_code == 400, reply.text
        assert message in reply.json()["error"]["message"]
    huge = server.upload(b"0" * (server.store.max_upload_bytes + 10_000))
    assert huge.status_code == 413 and "cap" in huge.json()["error"]["message"]
    assert axis_name in {a["id"] for a in httpx.get(f"{server.url}/axes").json()["data"]}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"steer": {"no-such-axis": 1.0}}, 400, "Unknown axis 'no-such-axis'"),
        ({"steer": {"AXIS": 5.0}}, 400, "steer.AXIS must be in [-2, 2]"),
        ({"steer": {"AXIS": "strong"}}, 400, "must be a finite number"),
        ({"steer": ["AXIS"]}, 400, "steer must be an object"),
        ({"max_tokens": 100000}, 400, "max_tokens must be in [1, 256]"),
        ({"temperature": -1}, 400, "temperature must be in"),
        ({"n": 3}, 400, "n must be 1"),
        ({"stream_options": {"include_usage": True}}, 400, "only allowed with stream: true"),
        ({"stream": True, "stream_options": {"include_usage": 1}}, 400, "stream_options must"),
        ({"messages": []}, 400, "messages must be a non-empty list"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "role in"),
        ({"messages": [{"role": "user", "content": "x" * 20000}]}, 400, "the cap is 16000"),
        ({"messages": [{"role": "user", "content": "word " * 3000}]}, 400, "tokens; the cap"),
    ],
)
def test_bad_requests_get_openai_errors(server, axis_name, body, status, message):
    request = {"messages": [{"role": "user", "content": "hi"}]} | body
    if "steer" in request and isinstance(request["steer"], dict):
        request["steer"] = {k.replace("AXIS", axis_name): v for k, v in request["steer"].items()}
    message = message.replace("AXIS", axis_name)
    reply = httpx.post(f"{server.url}/chat/completions", json=request, timeout=60)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert message in error["message"] and error["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError, match=re.escape(message)):  # read as OpenAI's
        server.client.chat.completions.create(
            model=server.served.lm.model_id, messages=request["messages"],
            extra_body={k: v for k, v in request.items() if k != "messages"},
        )  # fmt: skip


def test_nan_and_broken_json_are_refused(server, axis_name):
    steer = json.dumps({axis_name: 1.0}).replace("1.0", "NaN")  # json.dumps refuses to write NaN
    nan = '{"messages": [{"role": "user", "content": "hi"}], "steer": ' + steer + "}"
    for content, message in ((nan, "finite number"), ("{not json", "not valid JSON")):
        reply = httpx.post(f"{server.url}/chat/completions", content=content,
                           headers={"content-type": "application/json"}, timeout=60)  # fmt: skip
        assert reply.status_code == 400 and message in reply.json()["error"]["message"]
    assert server.chat("hi")  # the server goes on serving


def test_a_client_that_leaves_mid_stream_frees_its_row(server):
    body = {"messages": [{"role": "user", "content": "tell me a long story"}], "stream": True,
            "max_tokens": 200}  # fmt: skip
    with httpx.stream("POST", f"{server.url}/chat/completions", json=body, timeout=60) as reply:
        lines = reply.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert json.loads(first[6:])["choices"][0]["delta"]["role"] == "assistant"
    wait_until_idle(server.served.lm)  # the dropped stream's row ended its batch
    assert server.chat("hi")
    wait_until_idle(server.served.lm)


@pytest.mark.real_model
def test_cheerful_steering_through_the_openai_client_reads_cheerful(real_lm):
    """The shipped cheerful pack, +1 and −1 on dev prompts, streamed: VADER orders them."""
    prompts = list(read_queries(ASSETS / "dev_prompts.txt").queries)[:4]
    with Server(real_lm) as running:
        answers = {
            s: [running.streamed_chat(p, {"cheerful": s}, max_tokens=48) for p in prompts]
            for s in (-1.0, 0.0, 1.0)
        }
    assert all(a != b for a, b in zip(answers[1.0], answers[0.0], strict=True))
    mean = {s: sum(tone(texts)) / len(texts) for s, texts in answers.items()}
    assert mean[1.0] > mean[0.0] > mean[-1.0], mean


def test_alignez_serve_answers_on_its_port(model_dir):
    """`alignez serve` as a user starts it: a process, a model folder, the openai client."""
    port = free_port()
    command = [sys.executable, "-m", "alignez_core", "serve", "--model", str(model_dir),
               "--port", str(port)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        deadline = time.monotonic() + 120
        while True:
            try:
                models = [m.id for m in client.models.list()]
                break
            except openai.APIConnectionError:
                assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "alignez serve did not start"
                time.sleep(0.2)
        reply = client.chat.completions.create(
            model=models[0], messages=[{"role": "user", "content": "hi"}], max_tokens=8
        )
        assert reply.choices[0].message.content
        assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 8
    finally:
        process.terminate()
        process.wait(timeout=30)
