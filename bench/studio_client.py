"""The studio as a load test sees it: `app.py` in its own process on loopback, driven through
its public API with `gradio_client`, as any user or script would."""

from __future__ import annotations

import html
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from gradio_client import Client, handle_file

ROOT = Path(__file__).resolve().parent.parent
SLIDERS = 4  # session.MAX_AXES: the generate endpoint takes one value per slider


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """`python app.py` on a loopback port with its temp files in `workdir/tmp`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.tmp = workdir / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen | None = None
        self.load_seconds = math.nan

    def start(self, timeout: float = 240) -> App:
        env = dict(
            os.environ,
            GRADIO_SERVER_PORT=str(self.port),
            GRADIO_SERVER_NAME="127.0.0.1",
            GRADIO_ANALYTICS_ENABLED="False",
            HF_HUB_OFFLINE="1",
            TMPDIR=str(self.tmp),
            GRADIO_TEMP_DIR=str(self.tmp),
        )
        log = (self.workdir / "app.log").open("a")
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited early; see {log.name}")
            try:
                urllib.request.urlopen(self.url, timeout=2)
                self.load_seconds = time.perf_counter() - started
                return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"app.py did not serve within {timeout} s")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return math.nan

    def client(self) -> Client:
        """A new browser-like session (its own `gr.State`). httpx's 5 s default is too short for
        joining the queue on a loaded 2-core machine (a compile warm-up beside a burst)."""
        return Client(self.url, verbose=False, httpx_kwargs={"timeout": 60})


def raw_call(client: Client, url: str, api_name: str, data: list) -> str:
    """Call an endpoint in `client`'s session with a hand-written JSON body: Python writes NaN
    and Infinity literals that a JSON client refuses to send, but a hostile one can. Returns the
    result stream's text (its `event: complete` or `event: error` and data lines)."""
    body = json.dumps({"data": data, "session_hash": client.session_hash}).encode()
    request = urllib.request.Request(f"{url}gradio_api/call/{api_name}", data=body,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        event_id = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/{api_name}/{event_id}", timeout=300) as r:
        return r.read().decode()


def generate_args(prompt: str, sliders=(), tokens: int = 32, prompted: bool = True) -> list:
    """The generate endpoint's inputs in order (see `ui/studio.py`), greedy, band layers."""
    values = [*sliders, *[0.0] * SLIDERS][:SLIDERS]
    return [
        prompt,
        "subspace",
        "band",
        "",
        5,
        "last",
        tokens,
        0.0,
        0,
        True,  # settings, budget
        False,
        None,
        prompted,
        None,
        0,
        False,
        *values,
    ]


def answers(result) -> tuple[str, str, str]:
    """(base, edited, prompted) HTML from a generate result; the status is index 3."""
    return result[0], result[1], (result[2]["value"] if isinstance(result[2], dict) else result[2])


def answer_text(panel: str) -> str:
    """The plain text an answer panel shows (its divergence mark and escapes undone)."""
    match = re.search(r'<div class="answer-text">(.*)</div></div>$', panel, re.S)
    if match is None or '<span class="empty">' in match.group(1):
        return ""
    return html.unescape(re.sub(r"</?mark[^>]*>", "", match.group(1)))


def status_of(result) -> str:
    return str(result[3])


def upload(client: Client, path: Path) -> str:
    """Upload an axis pack; returns the axes status line (outputs: fit status, axes status, …;
    the client leaves the session state out)."""
    return str(client.predict(handle_file(str(path)), api_name="/upload_pack")[1])


def axes_in_session(client: Client) -> list[str]:
    """The session's axis names, read back from an exported session file."""
    import zipfile

    file_update, _ = client.predict(
        *generate_args("")[:10], *[0.0] * SLIDERS, api_name="/export_session"
    )
    path = file_update["value"] if isinstance(file_update, dict) else file_update
    with zipfile.ZipFile(path) as archive:
        return [a["name"] for a in json.loads(archive.read("session.json"))["axes"]]
