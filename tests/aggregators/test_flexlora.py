"""FlexLoRA: the dense reference path, identical to HLoRA's exact factored path."""

import pytest
import torch

from fedlora import get_aggregator
from tests.aggregators.common import SHAPES, best_rank, dense_sum, mixed_terms


@pytest.mark.parametrize("rank", [2, 11])
def test_flexlora_is_the_dense_truncated_svd_and_matches_hlora(rank):
    terms = mixed_terms()
    flex = get_aggregator("flexlora", rank=rank)
    hl = get_aggregator("hlora", rank=rank, method="exact")
    f_out, h_out = flex.combine(terms), hl.combine(terms)
    for name in SHAPES:
        torch.testing.assert_close(f_out.delta(name), best_rank(dense_sum(terms, name), rank), rtol=0, atol=1e-10)
        torch.testing.assert_close(f_out.delta(name), h_out.delta(name), rtol=0, atol=1e-10)
    assert flex.last_diagnostics["energy_lost"] == pytest.approx(hl.last_diagnostics["energy_lost"], abs=1e-8)
    # a client's share is the top directions of the dense sum (FlexLoRA's per-client SVD)
    client = flex.distribute(f_out, rank=1, alpha=2.0)
    for name in SHAPES:
        torch.testing.assert_close(client.delta(name), best_rank(dense_sum(terms, name), 1), rtol=0, atol=1e-10)
