"""fit_axis: model → self-generated pairs → activations → per-layer subspaces → AxisPack,
then the slider's clean edge per sign (`calibrate.py`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import torch

from alignez_core.axes.axis import Axis, seed_queries
from alignez_core.axes.pack import AxisPack, PreferencePair
from alignez_core.axes.queries import MAX_QUERIES
from alignez_core.axes.subspace import LayerSubspace, SubspaceConfig, fit_layer_subspace
from alignez_core.engine.activations import Pooling, answer_embeddings, prompt_end_embeddings
from alignez_core.engine.architecture import SITES, Site
from alignez_core.engine.catalog import ModelKind
from alignez_core.engine.model import LoadedModel
from alignez_core.errors import FitCancelled, FitError
from alignez_core.steering import DEFAULT_BAND, SteerSettings

from .calibrate import CalibrationConfig, calibrate, calibration_for_kind
from .fingerprint import ModelIdentity, fit_fingerprint
from .pairs import PairConfig, ProgressFn, generate_pairs, pairs_for_kind, persona_prompt
from .train import FIT_METHODS, FitMethod, TrainConfig, train_directions

Readout = Literal["answers", "persona"]
READOUTS: tuple[str, ...] = ("answers", "persona")
# How each readout's pack steers unless told otherwise (calibrated with it, stored in the pack):
# the answers' per-query subspace at each new token in the middle band; the persona difference
# added at every position (with `subspace` it does not carry the positive side) in a later band
# (docs/RESULTS.md).
READOUT_SETTINGS: dict[str, SteerSettings] = {
    "answers": SteerSettings(rule="subspace", band=DEFAULT_BAND, positions="last"),
    "persona": SteerSettings(rule="mean_diff", band=(0.4, 0.85), positions="all"),
}


@dataclass(frozen=True)
class FitConfig:
    """Everything that decides a fit; stored in the pack so a fit can be reproduced."""

    n_queries: int = 24
    pooling: Pooling = "mean"
    site: Site = "residual"  # where Φ is read: the decoder block's output, or "mlp" (the paper)
    # what Φ is read on: the last token of the pole asked for as an instruction ("persona", the
    # peers' recipe), or the self-generated answers, pooled ("answers", AlignEZ's pairs). A chat
    # model's default, chosen on held-out seed queries (docs/RESULTS.md); a base model's is
    # `readout_for_kind`'s.
    readout: Readout = "persona"
    pairs: PairConfig = field(default_factory=PairConfig)
    subspace: SubspaceConfig = field(default_factory=SubspaceConfig)
    batch_size: int = 16
    # None: no calibration (slider ±1 = the rule's default scale). Runs for residual packs only.
    calibration: CalibrationConfig | None = field(default_factory=CalibrationConfig)
    # "mean": each layer's direction is the pairs' mean difference; "trained": that, refined on
    # the same pairs by a preference loss (`train.py`, settings in `training`)
    method: FitMethod = "mean"
    training: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if not 1 <= self.n_queries <= MAX_QUERIES:
            raise FitError(f"n_queries must be 1–{MAX_QUERIES}, got {self.n_queries}.")
        if self.pooling not in ("last", "mean"):
            raise FitError(f"pooling must be 'last' or 'mean', got {self.pooling!r}.")
        if self.site not in SITES:
            raise FitError(f"site must be one of {', '.join(SITES)}, got {self.site!r}.")
        if self.readout not in READOUTS:
            raise FitError(f"readout must be one of {', '.join(READOUTS)}, got {self.readout!r}.")
        if self.method not in FIT_METHODS:
            raise FitError(f"method must be one of {', '.join(FIT_METHODS)}, got {self.method!r}.")

    def record(self) -> dict[str, Any]:
        """The settings as the pack stores them; a mean fit's without the training fields that
        do not act on it, so it reads (and fingerprints) as it did before trained fits."""
        data = asdict(self)
        if self.method == "mean":
            del data["method"], data["training"]
        return data

    @classmethod
    def for_kind(cls, kind: ModelKind, **changes: Any) -> FitConfig:
        """The defaults for a kind of model (its calibration, `calibration_for_kind`, how it
        writes its pairs, `pairs_for_kind`, and what it reads them on, `readout_for_kind`), then
        `changes`; what `fit_axis` uses when given no config."""
        defaults: dict[str, Any] = {
            "calibration": calibration_for_kind(kind),
            "pairs": pairs_for_kind(kind),
            "readout": readout_for_kind(kind, changes.get("method", "mean")),
        }
        return cls(**(defaults | changes))


def readout_for_kind(kind: ModelKind, method: FitMethod = "mean") -> Readout:
    """A base model's own answers (AlignEZ's readout, steered by their subspace), measured
    further than the persona prompt on the pretrained Gemma 3 270M (docs/models.md); a chat
    model's persona prompt. A trained fit trains the persona readout's `mean_diff` vector."""
    return "answers" if kind == "base" and method == "mean" else "persona"


def fit_axis(
    lm: LoadedModel,
    axis: Axis,
    queries: Sequence[str] | None = None,
    config: FitConfig | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    settings: SteerSettings = SteerSettings(),
) -> AxisPack:
    """Fit one axis on `lm`. User queries are used when given, else the built-in seed set; no
    config means the defaults for the model's kind (`FitConfig.for_kind`).

    The slider is calibrated with `settings` (the rule and layers it will be used with; a rule,
    band or positions left None is the readout's, `READOUT_SETTINGS`, and the band the axis's
    own where it has one) on the first few of the same queries, and the pack keeps them.
    """
    if config is None:
        config = FitConfig.for_kind(lm.effective_kind)
    settings = fit_settings(axis, config, settings)
    if config.method == "trained":
        _check_trainable(config.site, settings)
    chosen = fit_queries(queries, config)
    identity = ModelIdentity(lm.model_id, lm.hidden_size, lm.num_layers)
    fingerprint = fit_fingerprint(identity, axis, chosen, config, settings)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    pairs = generate_pairs(lm, axis, chosen, config.pairs, progress, cancel)
    timings["self_generation"] = time.perf_counter() - started

    started = time.perf_counter()
    answers, positive, negative = _read_pairs(lm, axis, pairs, config, progress, cancel)
    timings["activations"] = time.perf_counter() - started

    if cancel is not None and cancel.is_set():
        raise FitCancelled("Fit cancelled.")
    started = time.perf_counter()
    layers = _fit_layers(lm, axis, len(pairs), positive, negative, config)
    timings["svd"] = time.perf_counter() - started
    if progress is not None:
        progress("subspace", lm.num_layers, lm.num_layers)
    pack = AxisPack(
        axis=axis,
        model_id=lm.model_id,
        hidden_size=lm.hidden_size,
        layers=layers,
        pooling=config.pooling,
        site=config.site,
        residual_norms=answers.norm(dim=-1).mean(0).tolist() if config.site == "residual" else [],
        pairs=pairs,
        fit_config=config.record() | {"queries": len(chosen), "fingerprint": fingerprint},
        rule_defaults=asdict(settings),
        timings=timings,
    )
    pack.pair_coords = [
        torch.cat([positive[:, i], negative[:, i]]) @ pack.top2(i).T for i in range(lm.num_layers)
    ]
    if config.method == "trained":
        _train(lm, pack, config.training, settings, progress, cancel)
    if config.calibration is not None and config.site == "residual":
        _calibrate(lm, pack, chosen, settings, config.calibration, progress, cancel)
    return pack


def refine_axis(
    lm: LoadedModel,
    pack: AxisPack,
    training: TrainConfig = TrainConfig(),
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    recalibrate: bool = True,
) -> AxisPack:
    """A fitted pack's directions trained on its own stored pairs (`train.py`), recalibrated as
    it was fitted: what `FitConfig(method="trained")` does after the mean difference, for a pack
    already made. A new pack; `pack` is left as it was. Where training kept the mean difference
    (no epoch did better held out), the new pack keeps its calibration too: recalibrating the
    same directions would only add the noise of a borderline strength. `recalibrate=False`
    keeps it always, so the trained directions push exactly as far as the pack's (to compare
    directions at one strength). Training runs inside any `steer()` block around the call:
    another axis steering there is present in every forward, so the directions learn what this
    axis adds on top of it."""
    pack.check_compatible(lm)
    if pack.training is not None:
        raise FitError(f"Axis {pack.name!r} is already trained.")
    if not pack.pairs or not pack.residual_norms:
        raise FitError(
            f"Axis {pack.name!r} has no self-generated pairs or residual units to train on "
            "(an imported vector, or a pack read at the MLP site): fit it with this model first."
        )
    settings = SteerSettings().for_pack(pack)
    _check_trainable(pack.site, settings)
    refined = replace(pack, timings=dict(pack.timings), calibration=None)
    _train(lm, refined, training, settings, progress, cancel)
    fit_config = {k: v for k, v in pack.fit_config.items() if k != "fingerprint"}
    refined.fit_config = fit_config | {"method": "trained", "training": asdict(training)}
    assert refined.training is not None
    if refined.training.best_epoch == 0 or not recalibrate:  # the same clean edge
        refined.calibration = pack.calibration
        return refined
    stored = pack.calibration.settings.get("calibration") if pack.calibration else None
    if stored:
        calibration = CalibrationConfig(**(stored | {"grid": tuple(stored["grid"])}))
        queries = list(dict.fromkeys(pair.query for pair in pack.pairs))
        _calibrate(lm, refined, queries, settings, calibration, progress, cancel)
    return refined


def _calibrate(
    lm: LoadedModel,
    pack: AxisPack,
    queries: Sequence[str],
    settings: SteerSettings,
    config: CalibrationConfig,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
) -> None:
    if progress is not None:
        progress("calibration", 0, 1)
    pack.calibration = calibrate(lm, pack, queries, settings, config, cancel)
    pack.timings["calibration"] = pack.calibration.seconds
    if progress is not None:
        progress("calibration", 1, 1)


def _check_trainable(site: str, settings: SteerSettings) -> None:
    if site != "residual" or settings.chosen_rule != "mean_diff":
        raise FitError(
            "A trained fit trains the vector the mean_diff rule adds to the residual stream; "
            f"this axis steers with rule {settings.chosen_rule!r} at the {site} site. Train an "
            "axis read from the persona prompt at the residual site (the defaults), or give it "
            "rule mean_diff."
        )


def _train(
    lm: LoadedModel,
    pack: AxisPack,
    training: TrainConfig,
    settings: SteerSettings,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
) -> None:
    """Replace the directions `mean_diff` adds in the band by trained ones, in place; each keeps
    its mean difference's length, so plots and files read as before. When no epoch beat the mean
    difference on the held-out pairs, the directions stay exactly as they were."""
    started = time.perf_counter()
    layers = pack.layers
    initial = {
        i: layers[i].mean_difference
        for i in settings.band_layers(lm.num_layers)
        if layers[i].rank > 0 and layers[i].mean_difference.norm() > 1e-8
    }
    trained, pack.training = train_directions(
        lm,
        pack.pairs,
        initial,
        pack.residual_norms,
        settings.chosen_positions,
        training,
        progress,
        cancel,
    )
    if pack.training.best_epoch > 0:
        pack.layers = [
            replace(layer, mean_difference=trained[i] * layer.mean_difference.norm())
            if i in trained
            else layer
            for i, layer in enumerate(layers)
        ]
    pack.timings["training"] = time.perf_counter() - started


def fit_settings(axis: Axis, config: FitConfig, settings: SteerSettings) -> SteerSettings:
    """The settings a fit calibrates with: what `settings` leaves open is the readout's, and the
    band the axis's own where it has one."""
    defaults = READOUT_SETTINGS[config.readout]
    return settings.filled_from(replace(defaults, band=axis.band or defaults.band))


def fit_queries(queries: Sequence[str] | None, config: FitConfig) -> list[str]:
    """The queries a fit answers: the user's non-blank ones, else the seed set; at most n."""
    chosen = [q for q in (queries or []) if q.strip()] or seed_queries()
    return chosen[: config.n_queries]


def _read_pairs(
    lm: LoadedModel,
    axis: Axis,
    pairs: Sequence[PreferencePair],
    config: FitConfig,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pairs' hidden states per layer (docs/method.md §3): every answer's (both poles; they
    set the residual units), and the positive and negative readouts the directions come from."""
    queries = [p.query for p in pairs]

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress("activations", done, total)

    answers = answer_embeddings(
        lm,
        queries + queries,
        [p.positive for p in pairs] + [p.negative for p in pairs],
        config.pooling,
        config.site,
        config.batch_size,
        report,
        cancel,
    )
    if config.readout == "answers":
        return answers, answers[: len(pairs)], answers[len(pairs) :]
    asked = [persona_prompt(axis, q, pole) for pole in (True, False) for q in queries]
    ends = prompt_end_embeddings(lm, asked, config.site, config.batch_size, cancel)
    return answers, ends[: len(pairs)], ends[len(pairs) :]


def _fit_layers(
    lm: LoadedModel,
    axis: Axis,
    pair_count: int,
    positive: torch.Tensor,
    negative: torch.Tensor,
    config: FitConfig,
) -> list[LayerSubspace]:
    """Every layer's subspace from the pair differences (docs/method.md §4), or a FitError when
    every pair was filtered out everywhere."""
    # The pair filter drops answers too alike to learn from; two persona prompts differ by a few
    # words by construction, so every pair is kept (filtered, cheerful lost layers 8–9 and
    # moved −0.63 with 3/24 looping at −1; kept, −0.73 with 1/24: docs/RESULTS.md).
    subspace = (
        config.subspace
        if config.readout == "answers"
        else replace(config.subspace, max_pair_cosine=1.0)
    )
    layers = [
        fit_layer_subspace(positive[:, layer], negative[:, layer], subspace)
        for layer in range(lm.num_layers)
    ]
    if all(layer.rank == 0 for layer in layers):
        raise FitError(
            f"Every one of the {pair_count} pairs was filtered out at every layer (its two "
            f"answers' embeddings have cosine > {config.subspace.max_pair_cosine}): the poles "
            f"{axis.positive!r} and {axis.negative!r} gave answers too alike to learn from. "
            "Try more queries, more samples per pole, or more distinct poles."
        )
    return layers
