"""Count the tensor ops a piece of code dispatches: the cost that matters for launch-bound decoding.

At batch 1–2 a GPU decodes as fast as the host can launch kernels, so an edit's price is the
number of ops it adds per forward. Counting is deterministic and independent of the model's
width, so a CPU run of a narrow model predicts the count of the same architecture on a GPU.
"""

from __future__ import annotations

from collections.abc import Callable

from torch.utils._python_dispatch import TorchDispatchMode


class OpCounter(TorchDispatchMode):
    """`with OpCounter() as counter: …` then `counter.count`: ops that reached the dispatcher."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def ops_per_forward(generate: Callable[[int], object], short: int = 4, long: int = 12) -> float:
    """Tensor ops per decoding forward of `generate(new_tokens)` (which must force that many).

    One-off costs (tokenizing, compiling a plan) cancel by differencing two lengths.
    """
    counts = []
    for tokens in (short, long):
        with OpCounter() as counter:
            generate(tokens)
        counts.append(counter.count)
    return (counts[1] - counts[0]) / (long - short)
