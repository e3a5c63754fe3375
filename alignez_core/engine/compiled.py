"""Compiled decoding: a static KV cache + `torch.compile`d decoding step, with graph-safe edits.

Why: at batch 1–4 a CPU (or GPU) decoding step is bound by dispatching ~1,700 small ops, not by
reading weights; fusing the step is how serving stacks reach the hardware's ceiling. The eager
path's per-call hooks (`hooks.py`) read a `ContextVar` and run one kernel per row — not something
a graph can hold. Here the decoding step reads every edit from fixed-shape tables instead:
per (site, layer) a float32 `(B, 1, d)` push scaled by the token's norm (`scaled_add`) and
one added as is (`add`), zeros where a row or layer is unedited. Moving a slider rewrites table
values in place, so it never recompiles; shapes are bucketed (batch padded to 1, 2 or 4, cache
length to a multiple of `cache_bucket`), so the graphs stay few.

The prefill (variable length) runs eagerly through the same hooks with the eager plan, so every
rule and position behaves there exactly as on the eager path. Decoding steps need table rules:
a batch with `project` / `tanh` edits (a projection per token) decodes eagerly instead.

The compiled model is a structural clone of the user's model sharing every parameter and buffer
(no weights copied, the user's model untouched); its hooks are permanent and its tables are used
by one call at a time: a call that finds it busy decodes eagerly, so no call ever waits on or
touches another's edit.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import GenerationConfig, PreTrainedModel, StaticCache
from transformers.generation.configuration_utils import CompileConfig

from alignez_core.errors import AlignEZError

from .architecture import SITES, find_decoder_layout, text_config
from .edit import BatchPlan, Edit
from .hooks import apply_and_trace, hidden_of, with_hidden
from .matvec import use_matvec_linears
from .rules import add as add_rule
from .rules import get_rule, norm32, scaled_add

BATCH_BUCKETS: tuple[int, ...] = (1, 2, 4)


class CompileUnavailable(AlignEZError):
    """Compiled decoding cannot run here (the message says why); eager decoding is used."""


@dataclass(frozen=True)
class BucketTiming:
    """Seconds per generated token for one batch bucket, compiled and eager, timed side by side
    on this machine (`warmup.time_bucket`): which path wins differs by CPU, GPU and batch."""

    compiled_s: float
    eager_s: float

    @property
    def eager_faster(self) -> bool:
        return self.eager_s < self.compiled_s

    def describe(self) -> str:
        return f"{self.eager_s * 1e3:.0f} ms a token eager vs {self.compiled_s * 1e3:.0f} compiled"


@dataclass(frozen=True)
class CompileSettings:
    """Cache-length bucket and compiler mode (batches are padded to `BATCH_BUCKETS`). `mode`
    None: CUDA graphs on CUDA, inductor's default elsewhere."""

    cache_bucket: int = 256
    mode: str | None = None
    # Decoding steps' linear layers as fused multiply-reduce (`matvec.py`): on a 2-core CPU the
    # weights stream ~2.5× faster than through BLAS. None: on CPUs only (GPUs' GEMV kernels
    # already read at bandwidth).
    matvec: bool | None = None
    # Inductor treats the weights as constants and prepacks them for the CPU's BLAS kernels
    # (a second copy of the weights; bfloat16 step 30 → 23 ms). It only helps where products
    # still go through BLAS, so None means: on CPUs decoding without `matvec`.
    freezing: bool | None = None

    def matvec_on(self, device: torch.device) -> bool:
        return device.type == "cpu" if self.matvec is None else self.matvec

    def freezing_on(self, device: torch.device) -> bool:
        if self.freezing is not None:
            return self.freezing
        return device.type == "cpu" and not self.matvec_on(device)


def _shared_clone(model: PreTrainedModel) -> PreTrainedModel:
    """New module objects (own hooks, own attributes) over the very same parameter tensors."""
    memo = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, memo)


def table_kind(rule: str) -> str | None:
    """'scaled' or 'added' for a rule the decoding tables can hold; None for the others."""
    fn = get_rule(rule)
    return "scaled" if fn is scaled_add else "added" if fn is add_rule else None


class _Tables:
    """One batch bucket's decoding edits: {kind: {site: (L, B, 1, d) float32}}, zeros = no edit."""

    def __init__(self, layers: int, batch: int, hidden: int, device: torch.device) -> None:
        def zeros() -> torch.Tensor:
            return torch.zeros(layers, batch, 1, hidden, dtype=torch.float32, device=device)

        self.tensors = {kind: {site: zeros() for site in SITES} for kind in ("scaled", "added")}
        # each decoding step's last-position state per (site, layer), written in the graph, so
        # a traced call (the studio's trajectory plot) reads it without breaking the graph
        self.states = {site: zeros().squeeze(2) for site in SITES}

    def write(self, edits: Sequence[Edit | None]) -> None:
        """Rewrite every value in place (shapes and identities never change)."""
        staged = {
            kind: {site: torch.zeros_like(t) for site, t in sites.items()}
            for kind, sites in self.tensors.items()
        }
        for row, edit in enumerate(edits):
            for item in edit.resolved() if edit is not None else ():
                if item.positions == "prompt":  # the prompt's tokens only: nothing while decoding
                    continue
                kind = table_kind(item.rule)
                if kind is None:  # `supports` sends such batches to the eager path
                    raise CompileUnavailable(f"rule {item.rule!r} has no compiled table.")
                directions = torch.as_tensor(item.directions, dtype=torch.float32)
                push = float(item.strength) * directions.reshape(-1, directions.shape[-1]).sum(0)
                staged[kind][item.site][item.layer, row, 0] += push.to(staged[kind][item.site])
        for kind, sites in staged.items():
            for site, values in sites.items():
                self.tensors[kind][site].copy_(values)


class CompiledDecoder:
    """Generate with a compiled decoding step on a weight-sharing clone of `model`."""

    def __init__(
        self, model: PreTrainedModel, settings: CompileSettings = CompileSettings()
    ) -> None:
        device_map = getattr(model, "hf_device_map", None)
        if device_map and len(set(device_map.values())) > 1:
            raise CompileUnavailable("the model is split across devices (device_map).")
        if "sliding_attention" in (getattr(text_config(model), "layer_types", None) or ()):
            # measured on Gemma 3 270M: 77 s of compiling, then every step ran eagerly
            raise CompileUnavailable(
                "its sliding-window attention layers recompile the static-cache step at every "
                "token (transformers' sliding cache branches on its length)."
            )
        self.settings = settings
        self.model = _shared_clone(model)
        self.device = next(model.parameters()).device
        if settings.matvec_on(self.device):
            use_matvec_linears(self.model)
        layout = find_decoder_layout(self.model)
        cuda = self.device.type == "cuda"
        self.mode = settings.mode or ("reduce-overhead" if cuda else "default")
        self._lock = threading.Lock()
        self._tables: dict[int, _Tables] = {}
        self._caches: dict[tuple[int, int], StaticCache] = {}
        self._active: _Tables | None = None
        self._prefill_plan: BatchPlan | None = None
        self._traces: dict[int, list[torch.Tensor]] | None = None
        self._trace_site = "residual"
        self._rows = 0
        # True: only buckets a warm-up has compiled decode compiled (`mark_warm`), so a request
        # never pays a compile; False: each bucket compiles on its first call
        self.warm_only = False
        # What ran: generations served here, and decoding steps whose hook ran eagerly (0 when
        # the compiled graph made every token); tests read both.
        self.generations = 0
        self.eager_steps = 0
        self._warm: set[int] = set()
        # per bucket, compiled against eager as measured at warm-up; a bucket where eager won
        # decodes eagerly (`supports` says so)
        self.timings: dict[int, BucketTiming] = {}
        config = self.model.config.get_text_config(decoder=True)
        self._layers, self._hidden = config.num_hidden_layers, config.hidden_size
        modules = {"residual": layout.blocks, "mlp": layout.mlps}
        for site in SITES:
            for layer, module in enumerate(modules[site]):
                module.register_forward_hook(self._hook(site, layer))

    def _hook(self, site: str, layer: int):
        key = (site, layer)

        def hook(module: nn.Module, args: tuple, output):
            hidden = hidden_of(output)
            if hidden is None:
                return None
            if hidden.shape[1] > 1:  # the prefill, eager: the row plan, as on the eager path
                edited = apply_and_trace(
                    self._prefill_plan, key, hidden, self._traces, self._trace_site, self._rows
                )
                return None if edited is None else with_hidden(output, edited)
            tables = self._active
            if tables is None:  # a forward outside `generate` (none is run on this clone)
                return None
            if not torch.compiler.is_compiling():  # this step ran as Python, not as the graph
                self.eager_steps += 1
            scaled = tables.tensors["scaled"][site][layer]
            added = tables.tensors["added"][site][layer]
            edited = (hidden + norm32(hidden) * scaled + added).to(hidden.dtype)
            tables.states[site][layer].copy_(edited[:, -1])
            return with_hidden(output, edited)

        return hook

    def _mode_or_options(self) -> dict:
        """torch.compile takes a mode or options, not both, so the mode goes in as its options
        ("reduce-overhead" is CUDA graphs). Dynamo's guards on the clone's modules are skipped
        (1.7 ms of a 23 ms CPU step): nothing changes the clone's modules once it is built;
        edits and inputs are tensors, still guarded."""
        from torch._inductor import list_mode_options  # inductor loads only when compiling

        options = {
            **list_mode_options(self.mode),
            "freezing": self.settings.freezing_on(self.device),
            "guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe,
        }
        return {"mode": None, "options": options}

    @property
    def warming(self) -> bool:
        """True while no bucket a warm-up is for has been compiled yet (requests decode eagerly)."""
        return self.warm_only and not self._warm

    def mark_warm(self, batch: int) -> None:
        """`batch`'s bucket is compiled: requests of that size may decode through it."""
        bucket = self.bucket(batch)
        if bucket is not None:
            self._warm.add(bucket)

    @staticmethod
    def bucket(batch: int) -> int | None:
        return next((b for b in BATCH_BUCKETS if b >= batch), None)

    def supports(self, edits: Sequence[Edit | None], batch: int, prompt_length: int) -> str | None:
        """None when this batch can decode compiled, else why not (in words)."""
        bucket = self.bucket(batch)
        if bucket is None:
            return f"batch {batch} is above the compiled path's {BATCH_BUCKETS[-1]}"
        if prompt_length < 2:
            return "a one-token prompt has no separate prefill"
        for edit in edits:
            for item in edit.resolved() if edit is not None else ():
                if table_kind(item.rule) is None:
                    return f"rule {item.rule!r} projects each token (decoded eagerly)"
        if self.warm_only and bucket not in self._warm:
            return f"the {bucket}-row step is not warmed up"
        timing = self.timings.get(bucket)
        if timing is not None and timing.eager_faster:
            return f"eager measured faster for {bucket} rows ({timing.describe()})"
        return None

    def _cache(self, batch: int, length: int) -> StaticCache:
        key = (batch, length)
        if key not in self._caches:
            self._caches[key] = StaticCache(config=self.model.config, max_cache_len=length)
        cache = self._caches[key]
        cache.reset()
        return cache

    def generate(
        self,
        inputs: dict[str, torch.Tensor],
        edits: Sequence[Edit | None],
        plan: BatchPlan | None,
        generation_config: GenerationConfig,
        traces: dict[int, list[torch.Tensor]] | None = None,
        trace_site: str = "residual",
        started: Callable[[], None] | None = None,
        **kwargs,
    ) -> torch.Tensor | None:
        """Like `model.generate` on `inputs`; None (nothing run) when another call holds it.

        `traces` as in `EditHooks.applying`: each forward's last-position state per layer;
        tracing needs the `streamer` (it reads each step's state when the step's token arrives).
        `started` is called once this call holds the decoder, before decoding.
        """
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if started is not None:
                started()
            self._traces, self._trace_site = traces, trace_site
            if traces is not None:
                kwargs["streamer"] = _TracingStreamer(kwargs.get("streamer"), self, traces)
            output = self._generate_locked(inputs, edits, plan, generation_config, **kwargs)
            self.generations += 1
            return output
        finally:
            self._active, self._prefill_plan, self._traces = None, None, None
            self._lock.release()

    def step_states(self, site: str, layer: int) -> torch.Tensor:
        """The last decoding step's (rows, d) state at (site, layer), on the host."""
        if self._active is None:
            raise CompileUnavailable("no compiled generation is running.")
        state = self._active.states[site][layer][: self._rows]
        return state.to("cpu", torch.float32, copy=True)  # a copy: the buffer is rewritten

    def _generate_locked(self, inputs, edits, plan, generation_config, **kwargs) -> torch.Tensor:
        rows, prompt = inputs["input_ids"].shape
        self._rows = rows
        batch = self.bucket(rows)
        if batch is None:  # `supports` sends such batches to the eager path
            raise CompileUnavailable(f"no compiled step for {rows} rows.")
        pad = batch - rows
        if pad:  # dummy unedited rows, dropped below: one graph serves 3 rows as 4
            inputs = {k: torch.cat([v, v[-1:].expand(pad, -1)]) for k, v in inputs.items()}
            edits = [*edits, *([None] * pad)]
        needed = prompt + generation_config.max_new_tokens
        length = -(-needed // self.settings.cache_bucket) * self.settings.cache_bucket
        tables = self._tables.get(batch)
        if tables is None:
            tables = self._tables[batch] = _Tables(self._layers, batch, self._hidden, self.device)
        tables.write(edits)
        self._active, self._prefill_plan = tables, plan
        config = copy.deepcopy(generation_config)
        config.compile_config = CompileConfig(dynamic=False, **self._mode_or_options())
        config.compile_config._compile_all_devices = True
        output = self.model.generate(  # type: ignore[operator]  # nn.Module's __getattr__
            **inputs, past_key_values=self._cache(batch, length), generation_config=config, **kwargs
        )
        return output[:rows]


class _TracingStreamer:
    """Appends the state of the forward that produced each token, then hands the token on.

    `generate` puts the prompt, then each new token: the first comes from the prefill (traced by
    the hook), each later one from a decoding step whose states the graph has just written.
    """

    def __init__(self, inner, decoder: CompiledDecoder, traces: dict[int, list[torch.Tensor]]):
        self.inner, self.decoder, self.traces, self.puts = inner, decoder, traces, 0

    def put(self, value: torch.Tensor) -> None:
        self.puts += 1
        if self.puts > 2:  # 1: the prompt, 2: the prefill's token
            for layer, steps in self.traces.items():
                steps.append(self.decoder.step_states(self.decoder._trace_site, layer))
        if self.inner is not None:
            self.inner.put(value)

    def end(self) -> None:
        if self.inner is not None:
            self.inner.end()


def graphs_compiled() -> int:
    """How many graphs dynamo has compiled in this process (to count recompiles)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])
