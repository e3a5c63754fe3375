"""Freed memory goes back to the OS after a worker thread's big batches (a fit's pattern)."""

import threading
from pathlib import Path

import pytest
import torch

from alignez_core.engine.memory import release_freed_memory


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status on this system")


def test_memory_a_worker_thread_freed_is_handed_back():
    kept: list[torch.Tensor] = []

    def work() -> None:  # many mid-sized blocks (malloc, not mmap), as a batch's activations,
        blocks = [torch.ones(16_000) for _ in range(8_000)]  # ~500 MB
        kept.append(torch.ones(16))  # … then one small survivor above them pins the heap top
        del blocks

    worker = threading.Thread(target=work)
    before = rss_mb()
    worker.start()
    worker.join()
    held = rss_mb()
    assert release_freed_memory() is True  # glibc, as on this project's machines
    assert rss_mb() < held - 0.5 * (held - before)
