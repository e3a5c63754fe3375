"""Many users, one batch: a burst of concurrent studio requests with cross-session batching off
and on, side by side in one run (`engine/scheduler.py`).

Each of N users asks one dev prompt with one shipped preset at its own strength, as the studio
does: base + edited + prompted rows, greedy, `--tokens` new tokens. Batching off serves each
request as its own batch, `--slots` at a time (the studio's concurrency without batching);
batching on submits every request to one `Scheduler`. Printed: first- and last-token times
(p50 / p95), aggregate tokens/s, their ratios; `isolation_mismatches` (the even users' tokens
when every odd user's axis and strength change, requests submitted in the same order so the
batches are laid out alike); `alone_mismatch_rate` (rows whose tokens differ from the same
request decoded as its own batch) and the path each shared batch decoded on; with `--openai`,
the same flip through the OpenAI endpoint (`openai_isolation_mismatches`); with `--stagger S`,
the requests arriving evenly over S seconds instead of at once (what joining only at batch
boundaries costs a late arrival). Last line: JSON.

    python bench/batching.py [--users 24] [--tokens 32] [--max-rows 96] [--openai] [--stagger S]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from decode_speed import cpu_model  # noqa: E402

from alignez_core import AxisPack, load_model  # noqa: E402
from alignez_core.axes.axis import ASSETS  # noqa: E402
from alignez_core.axes.prefit import packs_folder  # noqa: E402
from alignez_core.axes.queries import read_queries  # noqa: E402
from alignez_core.engine import Row, SamplingConfig, generate_rows, stream_rows  # noqa: E402
from alignez_core.engine.scheduler import MAX_ROWS, Scheduler  # noqa: E402
from alignez_core.steering import SteerSettings, comparison_rows  # noqa: E402

STRENGTHS = (1.0, -1.0, 0.5, -0.5, 1.5, -1.5)


def user_rows(lm, packs: list[AxisPack], prompts: list[str], n: int, flip_odd: bool) -> list:
    """User i's rows: prompt i, preset i mod 7 at STRENGTHS[i]; `flip_odd` gives every odd user
    another preset at another strength (the neighbours of the even users change)."""
    requests = []
    for i in range(n):
        pack, strength = user_axis(packs, i, flip_odd)
        rows = comparison_rows(lm, prompts[i % len(prompts)], {pack: strength}, SteerSettings())
        requests.append(rows.rows)
    return requests


def user_axis(packs: list[AxisPack], i: int, flip_odd: bool) -> tuple[AxisPack, float]:
    """User i's preset and strength (`user_rows`); `flip_odd` changes both for odd users."""
    shift = 3 if flip_odd and i % 2 else 0
    strength = STRENGTHS[(i + shift) % len(STRENGTHS)] * (-1 if flip_odd and i % 2 else 1)
    return packs[(i + shift) % len(packs)], strength


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def timed_burst(serve, requests: list[list[Row]], workers: int, stagger: float = 0.0) -> dict:
    """Request i arrives `i × stagger / n` seconds in (all at once by default) and is served
    when one of `workers` slots is free; (first, last) seconds per request from its arrival, and
    tokens/s overall."""
    started = time.perf_counter()
    first: list[float] = [0.0] * len(requests)
    last: list[float] = [0.0] * len(requests)
    texts: list[list[str]] = [[] for _ in requests]
    slots = threading.Semaphore(workers)

    def one(i: int) -> None:
        arrival = i * stagger / len(requests)
        time.sleep(max(0.0, arrival - (time.perf_counter() - started)))
        arrived = time.perf_counter()
        with slots:
            for step in serve(requests[i]):
                first[i] = first[i] or time.perf_counter() - arrived
                texts[i] = step
        last[i] = time.perf_counter() - arrived

    with ThreadPoolExecutor(len(requests)) as pool:
        list(pool.map(one, range(len(requests))))
    wall = time.perf_counter() - started
    return {"first": first, "last": last, "wall": wall, "texts": texts}


def summary(name: str, run: dict, tokens: int) -> dict:
    return {
        f"{name}_ttft_p50_s": pct(run["first"], 0.5),
        f"{name}_ttft_p95_s": pct(run["first"], 0.95),
        f"{name}_last_p50_s": pct(run["last"], 0.5),
        f"{name}_last_p95_s": pct(run["last"], 0.95),
        f"{name}_tokens_per_s": round(tokens / run["wall"], 1),
    }


def ordered_tickets(scheduler: Scheduler, requests: list[list[Row]], config: SamplingConfig):
    """Submit in a fixed order from one thread (same batch layout every time), read together."""
    tickets = [scheduler.submit(rows, config) for rows in requests]
    with ThreadPoolExecutor(len(tickets)) as pool:
        list(pool.map(lambda t: list(scheduler.read(t)), tickets))
    return tickets


def openai_isolation(
    lm, packs: list[AxisPack], prompts: list[str], users: int, tokens: int
) -> dict:
    """The same flip through the OpenAI endpoint (`alignez serve`'s app on a loopback port, the
    `openai` client, every user's request at once): each even user's answer with its neighbours
    as first set, then with every odd user's axis and strength changed."""
    import socket

    import openai
    import uvicorn

    from alignez_core.server import ServedModel
    from alignez_core.server.openai_api import openai_app

    served = ServedModel(lm, batching=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(openai_app(served), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="-", timeout=600)

    def answer(i: int, flip_odd: bool) -> str:
        pack, strength = user_axis(packs, i, flip_odd)
        reply = client.chat.completions.create(
            model=lm.model_id, messages=[{"role": "user", "content": prompts[i % len(prompts)]}],
            max_tokens=tokens, extra_body={"steer": {pack.name: strength}},
        )  # fmt: skip
        return reply.choices[0].message.content or ""

    waves = []
    for flip in (False, True):
        with ThreadPoolExecutor(users) as pool:
            waves.append(list(pool.map(lambda i, flip=flip: answer(i, flip), range(users))))
    server.should_exit = True
    if served.scheduler is not None:
        served.scheduler.close()
    first, second = waves
    return {
        "openai_isolation_rows_compared": len(range(0, users, 2)),
        "openai_isolation_mismatches": sum(first[i] != second[i] for i in range(0, users, 2)),
        "openai_neighbours_changed_rows": sum(first[i] != second[i] for i in range(1, users, 2)),
    }


def staggered(scheduler: Scheduler, requests, config, stagger: float, generated: int) -> dict:
    """Requests arriving evenly over `stagger` seconds, batching on: one that arrives while a
    batch decodes waits for it to end (rows join at batch boundaries only). Beside it, a lone
    request's first token on an idle scheduler: about what joining between decoding steps could
    bring a late arrival down to (its own prefill and one step)."""
    lone = timed_burst(lambda rows: scheduler.stream(rows, config), requests[:1], 1)
    batches = scheduler.batches
    run = timed_burst(lambda rows: scheduler.stream(rows, config), requests, len(requests), stagger)
    out = {f"stagger_{k.removeprefix('on_')}": v for k, v in summary("on", run, generated).items()}
    return out | {"stagger_s": stagger, "stagger_batches": scheduler.batches - batches,
                  "lone_ttft_s": round(lone["first"][0], 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=24)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--slots", type=int, default=4, help="batching off: requests at once")
    parser.add_argument("--max-rows", type=int, default=MAX_ROWS)
    parser.add_argument("--openai", action="store_true", help="also the flip through /v1")
    parser.add_argument(
        "--stagger", type=float, default=0.0,
        help="also: requests arriving evenly over this many seconds, batching on",
    )  # fmt: skip
    args = parser.parse_args()
    lm = load_model()
    folder = packs_folder(lm.model_id)
    assert folder is not None, "a named model ships the presets' packs"
    packs = [AxisPack.load(p, lm) for p in sorted(folder.glob("*.safetensors"))]
    prompts = list(read_queries(ASSETS / "dev_prompts.txt").queries)
    config = SamplingConfig(max_new_tokens=args.tokens, min_new_tokens=args.tokens)
    requests = user_rows(lm, packs, prompts, args.users, flip_odd=False)
    generated = sum(len(rows) for rows in requests) * args.tokens
    scheduler = Scheduler(lm, max_rows=args.max_rows)
    list(stream_rows(lm, requests[0], config))  # first-call costs out of both timings

    off = timed_burst(lambda rows: stream_rows(lm, rows, config), requests, args.slots)
    on = timed_burst(lambda rows: scheduler.stream(rows, config), requests, len(requests))
    on_batches = scheduler.batches
    results = {"cpu": cpu_model(), "users": args.users, "rows": generated // args.tokens,
               "tokens": args.tokens, "slots_off": args.slots,
               "max_rows": args.max_rows}  # fmt: skip
    results |= summary("off", off, generated) | summary("on", on, generated)
    results["on_batches"] = on_batches
    results["ttft_p95_on_over_off"] = round(results["on_ttft_p95_s"] / results["off_ttft_p95_s"], 3)
    results["tokens_per_s_on_over_off"] = round(
        results["on_tokens_per_s"] / results["off_tokens_per_s"], 2
    )

    first = ordered_tickets(scheduler, requests, config)
    flipped = user_rows(lm, packs, prompts, args.users, flip_odd=True)
    second = ordered_tickets(scheduler, flipped, config)
    even = range(0, args.users, 2)
    results["isolation_rows_compared"] = sum(len(first[i].rows) for i in even)
    results["isolation_mismatches"] = sum(
        a != b for i in even for a, b in zip(first[i].token_ids, second[i].token_ids, strict=True)
    )
    results["neighbours_changed_rows"] = sum(
        a != b
        for i in range(1, args.users, 2)
        for a, b in zip(first[i].token_ids, second[i].token_ids, strict=True)
    )
    results["batch_paths"] = sorted({f"{t.batch_rows} rows: {t.path}" for t in first})

    alone = [generate_rows(lm, rows, config) for rows in requests]
    differing = [
        (i, j)
        for i, outputs in enumerate(alone)
        for j, output in enumerate(outputs)
        if list(output.token_ids) != first[i].token_ids[j]
    ]
    results["alone_rows_compared"] = generated // args.tokens
    results["alone_mismatch_rate"] = round(len(differing) / results["alone_rows_compared"], 3)
    if differing:
        i, j = differing[0]
        mine, theirs = alone[i][j].token_ids, first[i].token_ids[j]
        where = next(k for k, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b)
        results["alone_first_difference"] = {"user": i, "row": j, "token": where}
    if args.stagger:
        results |= staggered(scheduler, requests, config, args.stagger, generated)
    scheduler.close()
    if args.openai:
        results |= openai_isolation(lm, packs, prompts, args.users, args.tokens)
    for key, value in results.items():
        print(f"{key:>28}: {value}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
