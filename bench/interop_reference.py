"""How `tests/data`'s peer files and the reference shifts `tests/test_interop.py` pins were made.

repeng 0.4.0 and steering-vectors 0.12.2 (`make peers`) each train a cheerful ↔ gloomy vector on
the embedded SmolLM2 with their own code (`peer_vectors.train_peer_files`: the personas as
instructions on the first 24 seed queries; repeng on layers 1–29, steering-vectors at the
prompt's last token on layers 8–20) and write the file they exchange. Each peer then steers with
its own code (repeng's `ControlModel.set_control`, steering-vectors' `apply`), greedy, 48 tokens,
on the first 6 dev prompts, one prompt at a time, and VADER scores the answers: the mean shift
against the unsteered answers is the peer's reference. Beside it, the same file imported into
our engine and applied as the peers apply theirs (the test's own measurement).

    python bench/interop_reference.py [--write tests/data]   # ~3 min here

Prints a table, then one JSON object as its last line (`tests/data/peer-reference.log`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from peer_vectors import train_peer_files

from alignez_core import SamplingConfig, generate, load_model
from alignez_core.axes.axis import ASSETS, preset
from alignez_core.axes.queries import read_queries
from alignez_core.engine.edit import ALL_LAYERS
from alignez_core.interop import import_control_vector, load_axis_file
from alignez_core.measure.judges import tone
from alignez_core.steering import SteerSettings

TOKENS = 48
REPENG_COEFFS = (2.0, -2.0)
STEERING_VECTORS_MULTIPLIERS = (0.5, -0.5)
BAND = tuple(range(8, 21))


def _peer_answers(lm, prompts: list[str]) -> list[str]:
    """Greedy answers from the model as it is now (a peer's steering applied or not)."""
    texts = []
    for prompt in prompts:
        encoded = lm.encode(lm.format_prompt(prompt), return_tensors="pt").to(lm.device)
        with torch.no_grad():
            out = lm.model.generate(**encoded, max_new_tokens=TOKENS, do_sample=False)
        texts.append(
            lm.tokenizer.decode(out[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
        )
    return texts


def _shift(texts: list[str], base: list[str]) -> float:
    return round(statistics.mean(tone(texts)) - statistics.mean(tone(base)), 3)


def _ours(lm, pack, prompts: list[str], strengths) -> dict[float, float]:
    """The file in our engine, applied as the peers apply theirs (as the test measures it)."""
    settings = SteerSettings(rule="mean_diff", band=ALL_LAYERS, positions="all")
    shifts = {}
    for strength in strengths:
        sampling = SamplingConfig(TOKENS, loop_guard=0)  # plain greedy, as the peers decode
        answers = generate(lm, prompts, {pack: strength}, settings, sampling)
        shifts[strength] = _shift([a.edited for a in answers], [a.base for a in answers])
    return shifts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", help="folder to write the two peer files into (tests/data)")
    args = parser.parse_args()
    from peers import _import_peers  # repeng and steering-vectors, from .bench-peers

    ControlModel = _import_peers()[0]
    lm = load_model()
    axis = preset("cheerful")
    queries = read_queries(ASSETS / "seed_queries.txt").queries[:24]
    prompts = read_queries(ASSETS / "dev_prompts.txt").queries[:6]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.write or scratch)
        gguf, safetensors, vector, trained = train_peer_files(lm, axis, queries, BAND, folder)
        base = _peer_answers(lm, prompts)
        control = ControlModel(lm.model, list(range(1, lm.num_layers)))
        repeng = {}
        try:
            for coeff in REPENG_COEFFS:
                control.set_control(vector, coeff)
                repeng[coeff] = _shift(_peer_answers(lm, prompts), base)
        finally:
            control.unwrap()
        steering_vectors = {}
        for multiplier in STEERING_VECTORS_MULTIPLIERS:
            with trained.apply(lm.model, multiplier=multiplier):
                steering_vectors[multiplier] = _shift(_peer_answers(lm, prompts), base)
        ours_repeng = _ours(lm, import_control_vector(gguf, lm), prompts, REPENG_COEFFS)
        ours_sv = _ours(lm, load_axis_file(safetensors, lm), prompts, STEERING_VECTORS_MULTIPLIERS)
    result = {
        "repeng": {"own": repeng, "ours": ours_repeng},
        "steering_vectors": {"own": steering_vectors, "ours": ours_sv},
        "files": [gguf.name, safetensors.name] if args.write else None,
    }
    for peer in ("repeng", "steering_vectors"):
        for strength, own in result[peer]["own"].items():
            ours = result[peer]["ours"][strength]
            print(f"{peer:<17} {strength:+.1f}  own {own:+.3f}  ours {ours:+.3f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
