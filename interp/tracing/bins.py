"""The atlas histogram's bins, read from a float32's bits: shared by the torch passes (``reducers``) and the
fused CPU pass (``fused``)."""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

# Histogram bins come straight from the float32 bits: sign, exponent and the top two
# mantissa bits give 4 bins per octave (ratio 2^(1/4) ~ 1.19), from 2^-12 to 2^12 on
# each side, plus a bin for |x| < 2^-12 (one per sign) and one beyond +-2^12.
SHIFT, LOW_KEY, SPAN = 21, (115 << 2) - 1, 97  # key 460 is 2^-12 (biased exponent 115)
SIDE = SPAN + 1  # 98 bins per sign
N_BINS = 2 * SIDE  # 196


def _lower_edge(m: int) -> float:
    key = LOW_KEY + m
    return 2.0 ** ((key >> 2) - 127) * (1 + (key & 3) / 4)


_POS_EDGES = [_lower_edge(m) for m in range(1, SPAN + 1)]  # 2^-12 ... 2^12
HIST_EDGES = torch.tensor([-e for e in reversed(_POS_EDGES)] + [0.0] + _POS_EDGES)  # 195 edges -> 196 bins


def hist_bins(x: Float[Tensor, "..."], offset: Int[Tensor, "..."] | int = 0,
              scratch: tuple[Tensor, Tensor] | None = None) -> Int[Tensor, "..."]:
    """The histogram bin of each float32 value (plus ``offset``), read from its bits with
    integer operations: shift, mask, subtract, clamp, and a sign flip by xor.

    Bins ``0..97`` hold negative values (``0``: below ``-2^12``; ``97``: ``(-2^-12, 0]``),
    bins ``98..195`` the rest (``98``: ``[0, 2^-12)``; ``195``: ``2^12`` and above);
    ``HIST_EDGES`` are the boundaries between them. ``scratch``: two int32 tensors of ``x``'s
    shape to compute in (the result is the second), so a stream of batches allocates nothing.
    """
    bits = x.float().contiguous().view(torch.int32)
    key, mag = scratch if scratch is not None else (None, None)
    key = torch.bitwise_right_shift(bits, SHIFT, out=key)  # sign, exponent, 2 mantissa bits; < 0 if negative
    mag = torch.bitwise_and(key, 1023, out=mag).sub_(LOW_KEY).clamp_(0, SPAN)  # the magnitude's bin on its side
    # negative values: SPAN - mag, i.e. (~mag) + SIDE; key >> 10 is -1 for them and 0 otherwise
    return mag.bitwise_xor_(key.bitwise_right_shift_(10)).add_(offset + SIDE)
