"""make loadtest: many studio users at once, through the app's public API (gradio_client).

Starts `app.py` on the real default model on a loopback port, as a user would, and measures:
isolation (N sessions at once, each with its own axis and strength, token for token equal to the
same request run alone), a burst (time to first / last token), a soak (RSS growth), cancels and
vanished clients (do they free their slot?), SIGKILL during a fit and a generation (does the next
start serve, with the cache and an exported session intact?), and bad input at the API. Loops
are bounded in count and time. Prints a table, then one JSON object as its last line.

    python bench/loadtest.py [--quick]   # --quick: 3 sessions, 10 generations, one round of cancels
    python bench/loadtest.py --quick --model gemma3-270m   # the same on another named model

`--model` is passed to every process it starts as ALIGNEZ_MODEL (the studio, the CLI fits, the
reference), and the shipped packs it adds are that model's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gradio_client import handle_file
from loadtest_bad import bad_inputs, make_packs
from studio_client import (
    ROOT,
    App,
    answer_text,
    answers,
    axes_in_session,
    generate_args,
    status_of,
    upload,
)

from alignez_core import AxisPack
from alignez_core.axes.prefit import packs_folder

HERE = Path(__file__).resolve().parent
PROMPTS = [
    "What should I do this weekend?",
    "Describe your morning commute.",
    "How do I make a good cup of coffee?",
    "Tell me about autumn.",
]
# Session i's slider in the first concurrent round. Session 1 stays at 0: its answer must be the
# base model's whatever its neighbours do. The quick run's steered sessions (cheerful +2, concise
# +2, cheerful −2 in round two) each move their first 16 tokens, so a leak from them would show.
STRENGTHS = [2.0, 0.0, 2.0, 1.5, -2.0, 1.0, -1.5, 0.5]


def first_token_seconds(client, args: list, timeout: float = 300) -> tuple[float, float, tuple]:
    """(time to first streamed token, time to the end, final result) of one generate call."""
    started = time.perf_counter()
    job = client.submit(*args, api_name="/generate")
    first = None
    while not job.done():
        if first is None and any(
            'answer-text">' in str(o[0]) and "(no output yet)" not in str(o[0])
            for o in job.outputs()
        ):
            first = time.perf_counter() - started
        if time.perf_counter() - started > timeout:
            job.cancel()
            raise TimeoutError("generation did not finish")
        time.sleep(0.01)
    result = job.result()
    total = time.perf_counter() - started
    return (first if first is not None else total), total, result


def isolation_packs(workdir: Path, fitted: list[Path], n: int) -> list[Path]:
    """One pack per session, no two with the same axis: the CLI-fitted ones, then shipped
    presets; past the distinct ones a pack repeats."""
    names = {AxisPack.load(p).name for p in fitted}
    folder = packs_folder(os.environ.get("ALIGNEZ_MODEL"))
    shipped_packs = sorted(folder.glob("*.safetensors")) if folder is not None else []
    shipped = [p for p in shipped_packs if p.stem not in names]
    distinct = [*fitted, *shipped]
    return [distinct[i % len(distinct)] for i in range(n)]


def reference_answers(workdir: Path, requests: list[dict]) -> list[list[str]]:
    """Each request answered by the engine in a separate process (`loadtest_reference.py`)."""
    asked, answered = workdir / "reference-requests.json", workdir / "reference-answers.json"
    asked.write_text(json.dumps(requests))
    subprocess.run([sys.executable, str(HERE / "loadtest_reference.py"), str(asked),
                    str(answered)], cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    return json.loads(answered.read_text())


def isolation(app: App, workdir: Path, fitted: list[Path], n: int, tokens: int) -> dict:
    """Each session's answers, served alone and then with every session at once (twice: the
    second time with sessions 0, 3 and 6 flipped, so every session's neighbours change),
    against the engine's answer to the same request in a separate process."""
    packs = isolation_packs(workdir, fitted, n)
    rounds = [
        [STRENGTHS[i] for i in range(n)],
        [STRENGTHS[i] * (-1 if i % 3 == 0 else 1) for i in range(n)],  # sessions 0, 3, 6 flip
    ]
    requests = [
        {"prompt": PROMPTS[i % len(PROMPTS)], "pack": str(packs[i]), "strength": s[i],
         "tokens": tokens}
        for s in rounds for i in range(n)
    ]  # fmt: skip
    reference = reference_answers(workdir, requests)
    clients = [app.client() for _ in range(n)]
    for client, pack in zip(clients, packs, strict=True):
        upload(client, pack)

    def served(i: int, strengths: list[float]) -> list[str]:
        args = generate_args(PROMPTS[i % len(PROMPTS)], [strengths[i]], tokens)
        return [
            answer_text(panel) for panel in answers(clients[i].predict(*args, api_name="/generate"))
        ]

    alone = [served(i, rounds[0]) for i in range(n)]
    together = []
    for strengths in rounds:
        with ThreadPoolExecutor(n) as pool:
            together += list(pool.map(lambda i, s=strengths: served(i, s), range(n)))
    # alone: round one's requests; together: round one's, then round two's (as `requests`)
    served_answers = [*alone, *together]
    expected = [*reference[:n], *reference]
    wrong = [
        {"session": k % n, "expected": want, "served": got}
        for k, (got, want) in enumerate(zip(served_answers, expected, strict=True))
        if got != want
    ]
    return {
        "isolation_sessions": n,
        "isolation_distinct_packs": len(set(packs)),
        "isolation_answers_compared": len(served_answers),
        "isolation_mismatches": len(wrong),
        # a leak can only show where steering shows: every steered request's edit must move it
        "isolation_steered": sum(r["strength"] != 0 for r in requests),
        "isolation_steered_visible": sum(
            r["strength"] != 0 and a[1] != a[0] for r, a in zip(requests, reference, strict=True)
        ),
        "isolation_first_mismatch": wrong[0] if wrong else None,
    }


def burst(app: App, n: int, tokens: int) -> dict:
    clients = [app.client() for _ in range(n)]
    results: list = [None] * n

    def one(i: int) -> None:
        try:
            results[i] = first_token_seconds(clients[i], generate_args(PROMPTS[i % 4], (), tokens))
        except Exception as exc:  # counted as an error below
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:  # all arrive within a second
        t.start()
    for t in threads:
        t.join(timeout=600)
    served = [r for r in results if isinstance(r, tuple) and "Done in" in status_of(r[2])]
    ttft = sorted(r[0] for r in served) or [float("nan")]
    last = sorted(r[1] for r in served) or [float("nan")]

    def pct(values, q):
        return round(values[min(len(values) - 1, int(q * len(values)))], 2)

    return {
        "burst_requests": n,
        "burst_served": len(served),
        "burst_errors": n - len(served),
        "ttft_p50_s": pct(ttft, 0.5),
        "ttft_p95_s": pct(ttft, 0.95),
        "last_token_p50_s": pct(last, 0.5),
        "last_token_p95_s": pct(last, 0.95),
    }


def wait_for_compiled_decoding(client, timeout: float = 900) -> str:
    """Wait until the server's compiled decoding is warm (or off): a cold warm-up (a fresh
    clone's compile cache) finishes minutes after the first request, then loads its graphs."""
    deadline = time.time() + timeout
    while True:
        line = str(client.predict(api_name="/model_info"))
        if "warms up" not in line or time.time() > deadline:
            return line.rsplit("·", 1)[-1].strip()
        time.sleep(2)


def soak(app: App, n: int, tokens: int) -> dict:
    """n generations with sliders moving and two axes fitted and removed along the way; RSS
    after a warm-up that has taken every path once (generate, fit, remove) vs at the end."""
    client = app.client()

    def fit(name: str) -> None:
        result = client.predict("cheerful", name, "cheerful", "gloomy", "", "", "", 2, 1, "persona",
                                api_name="/fit")  # fmt: skip
        assert "Fitted" in str(result[0]), result[0]

    def generate(i: int, slider: list[float]) -> None:
        args = generate_args(PROMPTS[i % 4], slider, tokens)
        result = client.predict(*args, api_name="/generate")
        assert "Done in" in status_of(result), status_of(result)

    for i in range(3):
        generate(i, [])
    fit("warm-up")
    generate(3, [1.0])
    client.predict("warm-up", api_name="/remove")
    warm = wait_for_compiled_decoding(client)  # its graphs load once, mid-soak if not awaited
    generate(4, [])
    rss_warm = app.rss_mb()
    active = False
    for i in range(n):
        if i in (n // 5, 3 * n // 5):  # fit an axis along the way …
            fit(f"soak{i}")
            active = True
        if i in (2 * n // 5, 4 * n // 5):  # … and remove it
            client.predict(f"soak{i - n // 5}", api_name="/remove")
            active = False
        generate(i, [((i % 9) - 4) / 2] if active else [])
    rss_end = app.rss_mb()
    growth = round(100 * (rss_end - rss_warm) / rss_warm, 2)
    return {
        "soak_generations": n,
        "rss_warm_mb": round(rss_warm, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_growth_pct": growth,
        "soak_decoding": warm,
    }


VANISH = """
import sys, time
from gradio_client import Client
sys.path.insert(0, sys.argv[2])
from studio_client import generate_args
args = generate_args("Tell me a long story.", (), 256)
job = Client(sys.argv[1], verbose=False).submit(*args, api_name="/generate")
while not job.outputs(): time.sleep(0.02)
print("streaming", flush=True)
time.sleep(60)
"""


def cancel_and_disconnect(app: App, slots: int) -> dict:
    """Fill every generate slot with long answers, drop them, time the next first token."""
    probe = app.client()
    idle = statistics.median(
        first_token_seconds(probe, generate_args(PROMPTS[0], (), 8))[0] for _ in range(3)
    )
    out = {"idle_ttft_s": round(idle, 3)}
    clients = [app.client() for _ in range(slots)]
    jobs = [
        c.submit(*generate_args("Tell me a long story.", (), 256), api_name="/generate")
        for c in clients
    ]
    for job in jobs:
        while not job.outputs() and not job.done():
            time.sleep(0.02)
    for job in jobs:
        job.cancel()
    after = first_token_seconds(probe, generate_args(PROMPTS[1], (), 8))[0]
    out |= {"ttft_after_cancel_s": round(after, 3), "cancel_frees_slot": after <= 2 * idle}
    here = str(Path(__file__).resolve().parent)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", VANISH, app.url, here], stdout=subprocess.PIPE, text=True
        )
        for _ in range(slots)
    ]
    for proc in procs:
        proc.stdout.readline()  # "streaming": the answer is mid-stream
    for proc in procs:
        proc.kill()  # the client vanishes: its connection closes without a word
        proc.wait()
    time.sleep(1.0)
    after = first_token_seconds(probe, generate_args(PROMPTS[2], (), 8))[0]
    out |= {"ttft_after_disconnect_s": round(after, 3), "disconnect_frees_slot": after <= 2 * idle}
    fitter = app.client()
    job = fitter.submit(
        "cheerful", "halfway", "cheerful", "gloomy", "", "", "", 8, 1, "persona", api_name="/fit"
    )
    while not job.outputs() and not job.done():  # cancel once the fit reports progress, not
        time.sleep(0.05)  # after a guessed delay that a slow start could outlast
    fitter.predict(api_name="/cancel_fit")
    job.result(timeout=300)
    out["cancelled_fit_left_no_axis"] = "halfway" not in axes_in_session(fitter)
    return out


def crash_and_restart(app: App, packs: list[Path], workdir: Path) -> dict:
    client = app.client()
    for pack in packs:
        upload(client, pack)
    file_update, _ = client.predict(
        *generate_args("")[:10], 1.0, -1.0, 0.0, 0.0, api_name="/export_session"
    )
    saved = workdir / "before-kill.zip"
    saved.write_bytes(
        Path(file_update["value"] if isinstance(file_update, dict) else file_update).read_bytes()
    )
    checks = {}
    for moment in ("fit", "generation"):
        victim = app.client()
        if moment == "fit":
            victim.submit(
                "cheerful",
                "killed",
                "cheerful",
                "gloomy",
                "",
                "",
                "",
                8,
                1,
                "persona",
                api_name="/fit",
            )
            time.sleep(4.0)
        else:
            job = victim.submit(
                *generate_args("Tell me a long story.", (), 256), api_name="/generate"
            )
            while not job.outputs():
                time.sleep(0.02)
        app.kill()
        app.start()
        fresh = app.client()
        served = "Done in" in status_of(
            fresh.predict(*generate_args(PROMPTS[0], (), 8), api_name="/generate")
        )
        fresh.predict(handle_file(str(saved)), api_name="/import_session")
        names = axes_in_session(fresh)
        checks[moment] = served and len(names) == len(packs) and app.load_seconds < 60
        checks[f"{moment}_restart_load_s"] = round(app.load_seconds, 1)
    return {
        "restart_ok": bool(checks["fit"] and checks["generation"]),
        "restart_load_s": [checks["fit_restart_load_s"], checks["generation_restart_load_s"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="3 sessions, 10 generations, one round of cancels"
    )
    parser.add_argument("--model", help="a named model (gemma3-270m) instead of the default")
    args = parser.parse_args()
    if args.model:
        os.environ["ALIGNEZ_MODEL"] = args.model  # every process started below inherits it
    sessions, burst_n, soak_n, tokens = (3, 6, 10, 16) if args.quick else (7, 24, 100, 32)
    results: dict = {"mode": "quick" if args.quick else "full", "model": args.model or "default"}
    with tempfile.TemporaryDirectory(prefix="alignez-loadtest-") as folder:
        workdir = Path(folder)
        packs = make_packs(workdir)
        app = App(workdir).start()
        try:
            results |= isolation(app, workdir, packs, sessions, tokens)
            results |= bad_inputs(app, workdir, packs[0])
            results |= cancel_and_disconnect(app, slots=4)  # the generate event's concurrency
            if not args.quick:
                results |= burst(app, burst_n, tokens)
                results |= soak(app, soak_n, tokens)
                results |= crash_and_restart(app, packs, workdir)
            else:
                results |= soak(app, soak_n, tokens)
        finally:
            app.kill()
    width = max(map(len, results))
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
