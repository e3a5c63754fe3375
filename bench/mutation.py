"""Mutation testing of the modules that decide what a user gets (`make mutation`).

mutmut (pinned) mutates each function of those modules (pyproject's [tool.mutmut]) and runs the
fast tests that reach it; a mutant the tests still pass is a *survivor*. Prints each module's
kill rate and every survivor, writes the list to docs/mutation-survivors.txt, and ends with one
JSON line: {"kill_rate", "killed", "total", "per_module", "survivors"}. docs/mutation.md says
which survivors are equivalent or harmless.

    python bench/mutation.py [--max-children 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# "alignez_core.engine.edit.x_compile_plan__mutmut_3: killed" (methods: xǁClassǁmethod)
LINE = re.compile(r"^\s*(?P<name>(?P<module>[\w.]+)\.x[ǁ_]\S+__mutmut_\d+): (?P<status>.+)$")
KILLED = {"killed", "timeout", "segfault"}  # a timeout or crash is a test noticing the mutant


def read_results(mutmut: list[str]) -> tuple[dict[str, Counter], list[str]]:
    """Per module, killed and total; and every survivor as 'NAME: status'."""
    listed = subprocess.run(
        [*mutmut, "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    counts: dict[str, Counter] = defaultdict(Counter)
    survivors = []
    for line in listed.splitlines():
        match = LINE.match(line)
        if match is None:
            continue
        module, status = match["module"], match["status"].strip()
        counts[module]["total"] += 1
        if status in KILLED:
            counts[module]["killed"] += 1
        else:
            survivors.append(f"{match['name']}: {status}")  # `mutmut show NAME` gives the diff
    return counts, survivors


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="reuse mutants/ from an earlier run")
    parser.add_argument(
        "--confirm", action="store_true", help="rerun each survivor alone (about 8 s each)"
    )
    args = parser.parse_args()
    if not args.keep:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    mutmut = [sys.executable, "-m", "mutmut"]
    # mutmut forks a test process per mutant; torch's OpenMP pool does not survive a fork (the
    # children hang until they time out), so every process here computes on one thread.
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run([*mutmut, "run", "--max-children", str(args.max_children)], cwd=ROOT, env=env)
    counts, survivors = read_results(mutmut)
    if survivors and args.confirm:
        # Each survivor run again on its own: a check that a batch run's survivors are not an
        # artefact of state shared by its forked workers (seen with several threads per worker).
        for name in [line.split(": ")[0] for line in survivors]:
            subprocess.run([*mutmut, "run", name], cwd=ROOT, env=env, capture_output=True)
        before = len(survivors)
        counts, survivors = read_results(mutmut)
        print(f"confirmed alone: {len(survivors)} of {before} batch survivors")
    per_module = {
        module: {
            "killed": c["killed"],
            "total": c["total"],
            "kill_rate": round(c["killed"] / c["total"], 3),
        }
        for module, c in sorted(counts.items())
    }
    killed = sum(c["killed"] for c in counts.values())
    total = sum(c["total"] for c in counts.values())
    for module, row in per_module.items():
        print(f"{module:40s} {row['killed']:4d} / {row['total']:4d}  {row['kill_rate']:.1%}")
    print("survivors:", *survivors, sep="\n  ")
    (ROOT / "docs" / "mutation-survivors.txt").write_text("\n".join(survivors) + "\n")
    summary = {
        "kill_rate": round(killed / total, 3) if total else 0.0,
        "killed": killed,
        "total": total,
        "per_module": per_module,
        "survivors": len(survivors),
    }
    print(json.dumps(summary))
    return 0 if total else 1


if __name__ == "__main__":
    sys.exit(main())
