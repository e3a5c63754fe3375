import pytest
import torch

from alignez_core.axes.selection import conditioned_directions, layer_scores, select_layers
from alignez_core.axes.subspace import LayerSubspace
from alignez_core.errors import EditError

E = torch.eye(4)


def layer(*rows: int) -> LayerSubspace:
    basis = E[list(rows)] if rows else torch.zeros(0, 4)
    return LayerSubspace(basis, torch.ones(len(rows)), basis.sum(0), 4, 4)


def test_keeps_directions_the_query_does_not_express():
    query = torch.tensor([-1.0, 2.0, 0.0, 0.0])
    kept, cosines = conditioned_directions(query, layer(0, 1, 2))
    assert kept.tolist() == [E[0].tolist(), E[2].tolist()]  # cos < 0 and cos = 0 are kept
    assert (cosines <= 0).all()
    toward_negative, _ = conditioned_directions(query, layer(0, 1, 2), toward_positive=False)
    assert toward_negative.tolist() == [E[1].tolist(), E[2].tolist()]


def test_layers_ranked_by_score_and_pinned_layers_respected():
    layers = [layer(0), layer(0, 1), layer(), layer(1)]
    query = torch.tensor([[-1.0, 0, 0, 0], [-1.0, -1.0, 0, 0], [1.0, 1.0, 0, 0], [0.0, 1.0, 0, 0]])
    scores = [c.score for c in layer_scores(query, layers)]
    assert scores[0] == pytest.approx(1.0) and scores[1] == pytest.approx(1.0)
    assert scores[2] == 0.0 and scores[3] == 0.0
    top = select_layers(query, layers, top_n=5)
    assert [c.layer for c in top] == [0, 1]  # zero-score layers are never edited
    pinned = select_layers(query, layers, pinned=[3, 2])
    assert [c.layer for c in pinned] == [2, 3]
    with pytest.raises(EditError, match=r"Pinned layers \[9\] are out of range"):
        select_layers(query, layers, pinned=[9])
