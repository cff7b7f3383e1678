"""The pooled-output predictors: which head a task gets, and what the flattening head computes."""

from __future__ import annotations

import pytest
import torch

from orca.model.predictors import (
    FLATTEN_MAX_WEIGHTS,
    PREDICTORS,
    FlattenLinear,
    MeanPoolLinear,
)


class _Embedder(torch.nn.Module):
    def __init__(self, num_tokens: int) -> None:
        super().__init__()
        self.num_tokens = num_tokens


class _Body(torch.nn.Module):
    pass


def test_small_heads_read_every_token_and_large_ones_mean_pool():
    head = PREDICTORS.get("classification")(8, 3, embedder=_Embedder(5), body=_Body())
    assert isinstance(head, FlattenLinear) and head.head.in_features == 40
    too_many = FLATTEN_MAX_WEIGHTS // (8 * 3) + 1
    head = PREDICTORS.get("regression")(8, 3, embedder=_Embedder(too_many), body=_Body())
    assert isinstance(head, MeanPoolLinear)
    # an embedder whose token count is unknown gets the mean
    head = PREDICTORS.get("multilabel")(8, 3, embedder=torch.nn.Identity(), body=_Body())
    assert isinstance(head, MeanPoolLinear)


def test_flatten_head_with_equal_token_weights_is_the_mean_pool_head():
    torch.manual_seed(0)
    mean_head, flat_head = MeanPoolLinear(4, 2), FlattenLinear(4, 3, 2)
    with torch.no_grad():
        flat_head.head.weight.copy_(mean_head.head.weight.repeat(1, 3))  # same w per token
        flat_head.head.bias.copy_(mean_head.head.bias)
    h = torch.randn(5, 3, 4)
    torch.testing.assert_close(flat_head(h), mean_head(h))
    # and, unlike the mean, it tells the tokens apart
    with torch.no_grad():
        flat_head.head.weight.zero_()
        flat_head.head.weight[0, :4] = 1.0  # class 0 reads the first token only
    swapped = h[:, [1, 0, 2]]
    assert not torch.allclose(flat_head(h), flat_head(swapped))
    torch.testing.assert_close(mean_head(h), mean_head(swapped))


def test_flatten_head_refuses_another_token_count():
    with pytest.raises(ValueError, match="built for 3 body output tokens, got 4"):
        FlattenLinear(4, 3, 2)(torch.randn(2, 4, 4))
