"""The load test's isolation reference: each studio request answered by the engine alone, in a
process of its own (no server, no other session, eager decoding), so a leak that happens on
every call to the server cannot also be in the answer it is compared with.

    python bench/loadtest_reference.py requests.json answers.json

`requests.json` is a list of {"prompt", "pack", "strength", "tokens"} (one axis per request, as
the load test's sessions have); `answers.json` gets one [base, edited, prompted] per request,
the texts the studio's three columns show for it ("" where a column is empty).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from alignez_core import AxisPack, SamplingConfig, load_model
from alignez_core.engine.generation import generate_rows
from alignez_core.steering.answers import comparison_rows
from alignez_core.steering.options import settings_from_text

# What `studio_client.generate_args` asks the studio for: the subspace rule at each pack's band,
# the last prompt position's readout, the default budget, greedy with the default loop guard.
SETTINGS = settings_from_text(rule="subspace", positions="last")


def answer(lm, request: dict) -> list[str]:
    pack = AxisPack.load(request["pack"])
    batch = comparison_rows(lm, request["prompt"], {pack: float(request["strength"])}, SETTINGS)
    sampling = SamplingConfig(max_new_tokens=int(request["tokens"]), temperature=0.0, seed=0)
    texts = [out.text for out in generate_rows(lm, batch.rows, sampling)]
    edited = texts[batch.edited] if batch.edited is not None else ""
    prompted = texts[batch.prompted] if batch.prompted is not None else ""
    return [texts[0], edited, prompted]


def main() -> None:
    requests_path, answers_path = map(Path, sys.argv[1:3])
    lm = load_model(os.environ.get("ALIGNEZ_MODEL") or None)  # the studio's model
    requests = json.loads(requests_path.read_text())
    answers_path.write_text(json.dumps([answer(lm, r) for r in requests]))


if __name__ == "__main__":
    main()
