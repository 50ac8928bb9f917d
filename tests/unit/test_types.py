"""jaxtyping shapes on interp's public functions are checked under pytest."""

import pytest
import torch

from interp.metrics import logit_diff


def test_shape_annotations_are_enforced():
    logits = torch.zeros(2, 5)
    assert logit_diff(logits, torch.tensor([0, 1]), torch.tensor([1, 0])).shape == (2,)
    with pytest.raises(Exception, match="batch"):  # answer has 3 rows, logits 2
        logit_diff(logits, torch.tensor([0, 1, 2]), torch.tensor([1, 0]))
