"""repeng 0.4.0 and steering-vectors 0.12.2 on the same model, prompt and rank-1 vector.

The peers are installed for the benchmark only, outside the runtime environment, by
`make bench`: `pip install --no-deps --target .bench-peers repeng==0.4.0
steering-vectors==0.12.2 scikit-learn scipy threadpoolctl joblib cloudpickle`.
Each ratio is edited tokens/s ÷ plain `model.generate` tokens/s, measured pair by pair with
runs alternating (`paired_time_ratios`); beside it, the tensor ops each library adds per
decoding forward (counted, so free of timing noise, and the cost where decoding is
launch-bound).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from common import paired_time_ratios

from alignez_core import LoadedModel, SamplingConfig
from alignez_core.engine import Edit, LayerEdit, Row, generate_rows
from tests.profiling import ops_per_forward

PEERS = Path(__file__).resolve().parent.parent / ".bench-peers"
LAYERS = tuple(range(12, 19))  # steering-vectors' usual mid-network range on this model


def make_peers_importable() -> None:
    """Put `.bench-peers` on the path, with the NumPy alias repeng 0.4.0 still uses."""
    if str(PEERS) not in sys.path:
        sys.path.insert(0, str(PEERS))
    if not hasattr(np, "float_"):  # repeng 0.4.0 still names np.float_ (removed in NumPy 2)
        np.float_ = np.float64


def _import_peers():
    make_peers_importable()
    from repeng import ControlModel
    from steering_vectors import SteeringVector

    return ControlModel, SteeringVector


def peer_ratios(lm: LoadedModel, prompt: str, tokens: int, runs: int) -> dict[str, float]:
    ControlModel, SteeringVector = _import_peers()
    torch.manual_seed(0)
    vector = torch.randn(lm.hidden_size)
    vector = 4.0 * vector / vector.norm()
    enc = lm.encode(lm.format_prompt(prompt), return_tensors="pt")

    def forced(n: int) -> dict:
        return dict(max_new_tokens=n, min_new_tokens=n, do_sample=False,
                    pad_token_id=lm.tokenizer.pad_token_id)  # fmt: skip

    with_vector = {layer: vector for layer in LAYERS}
    edit = Edit(tuple(LayerEdit(layer, vector, 1.0, "add") for layer in LAYERS))
    steering_vector = SteeringVector(with_vector, "decoder_block")

    def plain(tokens: int = tokens) -> None:
        with torch.inference_mode():
            lm.model.generate(**enc, **forced(tokens))

    def ours(tokens: int = tokens) -> None:
        generate_rows(lm, [Row(prompt, edit)], SamplingConfig(tokens, min_new_tokens=tokens))

    def steering_vectors(tokens: int = tokens) -> None:
        with steering_vector.apply(lm.model, multiplier=1.0):
            plain(tokens)

    def repeng(tokens: int = tokens) -> None:
        control = ControlModel(lm.model, LAYERS)  # repeng wraps the layers in place …
        try:
            control.set_raw_control(with_vector)
            with torch.inference_mode():
                control.generate(**enc, **forced(tokens))
        finally:
            control.unwrap()  # … and must unwrap them to give the model back

    cases = {"alignez_same_vector": ours, "steering_vectors": steering_vectors, "repeng": repeng}
    plain()  # warm every path
    for fn in cases.values():
        fn()
    time_ratios, _ = paired_time_ratios(plain, cases, runs, sync=False)
    plain_ops = ops_per_forward(plain)
    extra_ops = {key: ops_per_forward(fn) - plain_ops for key, fn in cases.items()}
    result: dict = {key: round(1 / ratio, 3) for key, ratio in time_ratios.items()}
    result["extra_ops_per_forward"] = extra_ops
    return result
