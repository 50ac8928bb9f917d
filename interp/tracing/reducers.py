"""Streaming reducers for the neuron atlas, exact and mergeable.

For every neuron of the chosen layers, over a stream of token batches:

- ``top`` / ``bottom``: the k largest and smallest activations with their corpus
  position (a global token index, ``window * seq_len + pos``). Only values beyond a
  neuron's current k-th value can enter (the first batch: beyond a floor read from
  group maxima), found through per-group maxima, and only those are merged, by a
  stable sort with ties broken by the smaller position, so merging shards in any
  order gives the same answer as one pass.
- ``hist``: counts in fixed signed-log bins (``hist_bins``: 4 bins per octave from
  2^-12 to 2^12 on each side, read from the float bits, plus the bins next to zero and
  beyond +-2^12). Integer counts add exactly.
- moments: count, sum and sum of squares (float32 within a batch, float64 across
  batches), and the count of positive values.
- samples (``sample_seq_len > 0``): per neuron, per histogram bin and per split (``heldout``:
  a fifth of the windows, chosen by a hash of the window index), one position drawn uniformly
  from the bin's members among a quarter of all positions (those whose hashed key is 0 mod 4), with
  its activation: a min-key reservoir. A position's key is a hash of the position, so the draw
  is the same whatever the batch order or sharding, and merging keeps the smaller key (exact).
  This is delphi's "examples across the activation range", streamed: the explanations read
  the train split, the scores the held-out one.
- contexts (``context_k > 0``): the first ``context_k`` top and bottom examples and every quadrant
  example keep their neuron's activations ``width`` tokens either side (``interp.tracing.topk``).

Two implementations fold a batch (``interp.tracing.stream.fold``): on the CPU, with numba, one compiled pass over
each layer's activations (``interp.tracing.fused``); elsewhere (a GPU), the torch passes of ``fold`` (``update``
and ``update_quadrants``). They give the same state, bit for bit but for the sums' rounding (a test compares every
field), and ``merge`` combines either's shards.

Memory is fixed by (layers x d_mlp x k) and the bins, never by corpus length. The state
lives on the device it is built for (``device=``; the model's, in the atlas), so a GPU
run never copies activations to the host; ``state()`` moves it to the host, for
checkpoints, Ray and the Result.
"""

from __future__ import annotations

import os

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.tracing.bins import HIST_EDGES, N_BINS, hist_bins  # noqa: F401  (re-exported)
from interp.tracing.topk import Windows, by_row, keep, merge_kept


def _wide(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


QUADRANTS = ("g+u+", "g+u-", "g-u+", "g-u-")  # a GLU neuron's gate and up signs (0 counts as -)
SPLITS = ("train", "heldout")
HELDOUT_SHARE = 5  # one window in five is held out
SAMPLE_SHARE = 4  # one position in four can be drawn as a sample
_EMPTY = torch.iinfo(torch.int64).max
_LOW32 = 0xFFFFFFFF


def fused_available() -> bool:
    """Whether the fused CPU pass can run: numba is installed and ``INTERP_FUSED`` is not 0."""
    if os.environ.get("INTERP_FUSED", "1") == "0":
        return False
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def mix(x: Int[Tensor, "..."]) -> Int[Tensor, "..."]:
    """A fixed integer hash (int64 arithmetic, wrapping): the same on every device and run."""
    x = x.long() * 0x9E3779B1
    x = x ^ (x >> 29)
    x = x * 0x5851F42D4C957F2D
    return x ^ (x >> 32)


def heldout(windows: Int[Tensor, "..."]) -> Tensor:
    """Whether each window is in the held-out split (a fixed fifth of windows, by hash)."""
    return mix(windows.long() + 0x51ED) % HELDOUT_SHARE == 0


class AtlasReducer:
    """Streaming per-neuron statistics: top/bottom-k (value, position), a histogram, sums.
    With ``quadrant_k > 0`` (GLU models) also, per gate/up sign quadrant, the number of positions
    and the ``quadrant_k`` largest |activation| (value, position): ``update_quadrants``. With
    ``context_k > 0``, the first ``context_k`` top and bottom examples and every quadrant example keep
    their neuron's activations ``width`` tokens either side (``top_c``, ``bot_c``, ``quad_c``), read
    from the batch that held them (``interp.tracing.topk``): one pass over the corpus gives them."""

    def __init__(self, n_layers: int, d_mlp: int, k: int, device: torch.device | str = "cpu", quadrant_k: int = 0,
                 sample_seq_len: int = 0, context_k: int = 0, width: int = 10):
        self.k = k
        self.quadrant_k = quadrant_k
        self.sample_seq_len = sample_seq_len
        self.context_k, self.width = min(context_k, k), width
        self.device = torch.device(device)
        shape, on = (n_layers, d_mlp), {"device": self.device}
        self.top_v = torch.full((*shape, k), -torch.inf, **on)
        self.top_p = torch.full((*shape, k), -1, dtype=torch.long, **on)
        self.bot_v = torch.full((*shape, k), torch.inf, **on)
        self.bot_p = torch.full((*shape, k), -1, dtype=torch.long, **on)
        self.hist = torch.zeros((*shape, N_BINS), dtype=torch.int32, **on)  # < 2^31 positions per bin
        # float64 sums where the device has float64 (not MPS); int64 counts
        self.sum = torch.zeros(shape, dtype=_wide(self.device), **on)
        self.sumsq = torch.zeros(shape, dtype=_wide(self.device), **on)
        self.positive = torch.zeros(shape, dtype=torch.int64, **on)
        self.count = torch.zeros((), dtype=torch.int64, **on)
        self.top_c = self.bot_c = self.quad_c = None
        if self.context_k:
            self.top_c = torch.full((*shape, self.context_k, 2 * width + 1), torch.nan, **on)
            self.bot_c = torch.full_like(self.top_c, torch.nan)
        if quadrant_k:
            self.quad_count = torch.zeros((*shape, 4), dtype=torch.int64, **on)
            self.quad_v = torch.full((*shape, 4, quadrant_k), -torch.inf, **on)  # |activation|
            self.quad_p = torch.full((*shape, 4, quadrant_k), -1, dtype=torch.long, **on)
            if self.context_k:
                self.quad_c = torch.full((*shape, 4, quadrant_k, 2 * width + 1), torch.nan, **on)
        if sample_seq_len:  # [layer, split, neuron, bin]: (key << 32 | position), and the activation there
            self.samp = torch.full((n_layers, 2, d_mlp, N_BINS), _EMPTY, dtype=torch.long, **on)
            self.sval = torch.full((n_layers, 2, d_mlp, N_BINS), torch.nan, **on)
            self.seq_len = torch.tensor(sample_seq_len, dtype=torch.long, device="cpu")
        self._scratch: dict[str, Tensor] = {}  # reused between batches: fresh pages cost more than the work
        self._work: dict = {}  # the fused pass's scratch, likewise
        self._drawn = None  # (a batch's positions, a copy of them, its drawable tokens)
        self.fused = self.device.type == "cpu" and fused_available()  # where stream.fold takes the fused pass

    def fold(self, slot: int, act: Float[Tensor, "batch seq d_mlp"], positions: Int[Tensor, " tokens"], skip: int = 0,
             gate: Float[Tensor, "batch seq d_mlp"] | None = None, up: Float[Tensor, "batch seq d_mlp"] | None = None
             ) -> None:
        """Fold one batch of one layer, whole windows, by the torch passes (``update``, ``update_quadrants``):
        positions ``skip`` on of each window enter the statistics (``positions``: theirs, in order), every
        position can be read as a stored context; ``gate``, ``up``: the GLU pre-activations, for the quadrants.
        ``interp.tracing.stream.fold`` takes the fused CPU pass instead where ``fused`` says it runs; both give
        the same state, but for the sums' float rounding."""
        flat = (act[:, skip:] if skip else act).flatten(0, 1)
        windows = Windows(act, skip, self.width) if self.context_k else None
        self.update(slot, flat, positions, windows)
        if self.quadrant_k:
            gate_pos, up_pos = (torch.sign((pre[:, skip:] if skip else pre).flatten(0, 1).float()).clamp_(min=0)
                                for pre in (gate, up))
            self.update_quadrants(slot, flat, gate_pos, up_pos, positions, windows)

    # A batch with more than this many candidates per neuron on average takes the dense merge
    DENSE_ABOVE = 4.0
    # Tokens per group: a group's max (min) rules out the whole group with one comparison
    GROUP = 8

    def update(self, slot: int, acts: Float[Tensor, "tokens d_mlp"], positions: Int[Tensor, " tokens"],
               windows: Windows | None = None) -> None:
        """Fold one batch of one layer (``slot`` indexes the chosen layers) into the state.

        Top/bottom-k: only values beyond a per-neuron threshold can enter the k kept
        (``_candidates``), and only they are merged (``topk.keep``, which also reads the contexts of
        new entries from ``windows``). The threshold is the neuron's current
        k-th value; while the state holds fewer than k values (the first batch) it is the
        batch's own floor. Once the state is warm the candidates are few (a handful per neuron
        and batch). A batch with more than ``DENSE_ABOVE`` candidates per neuron on average
        takes the dense path (a top-k of every neuron that has one). Both give the same state.
        The histogram counts the bin read from each value's bits with one ``bincount``; the sums
        are float32 within a batch and float64 across batches; positive values are counted from
        the float bits (``clamp(bits, 0, 1)``: 1 exactly where the float is above +0). Each reducer
        expects its batches in increasing position order, as ``stream_batches`` and every Ray shard
        feed them; shards are combined with ``merge``, which is exact in any order.
        """
        a = acts.float().to(self.device)  # [tokens, d_mlp]: every reduction runs along the token axis
        positions = positions.to(self.device)
        d_mlp = a.shape[1]
        for largest, vals, poss, ctx in ((True, self.top_v, self.top_p, self.top_c),
                                         (False, self.bot_v, self.bot_p, self.bot_c)):
            full = not bool(poss[slot, :, -1].lt(0).any())
            tok, neuron, value = self._candidates(a, vals[slot, :, -1], largest, full)
            if len(tok) == 0:
                continue
            if len(tok) > d_mlp * self.k * self.DENSE_ABOVE:
                rows = torch.unique_consecutive(neuron)
                cand_v, cand_t = self._dense(a, rows, largest)
            else:
                rows, cand_v, cand_t = by_row(tok, neuron, value, -torch.inf if largest else torch.inf)
            keep(vals[slot], poss[slot], None if ctx is None else ctx[slot], rows, rows, cand_v, cand_t,
                 positions, largest, windows)
        offset = torch.arange(0, d_mlp * N_BINS, N_BINS, dtype=torch.int32, device=a.device)
        bins = hist_bins(a, offset, (self._buffer("key", a, torch.int32), self._buffer("bins", a, torch.int32)))
        self.hist[slot].view(-1).add_(torch.bincount(bins.view(-1), minlength=d_mlp * N_BINS))
        if self.sample_seq_len:
            self._sample(slot, a, bins, positions)
        self.sum[slot] += a.sum(0)
        self.sumsq[slot] += torch.mul(a, a, out=self._buffer("square", a, a.dtype)).sum(0)
        above = torch.clamp(a.view(torch.int32), 0, 1, out=self._buffer("key", a, torch.int32))
        self.positive[slot] += above.sum(0, dtype=torch.int32)

    def update_quadrants(self, slot: int, acts: Float[Tensor, "tokens d_mlp"], gate_pos: Tensor, up_pos: Tensor,
                         positions: Int[Tensor, " tokens"],
                         windows: Windows | None = None) -> None:
        """Fold one batch of one layer's gate/up signs (``gate_pos``, ``up_pos``: ``[tokens, d_mlp]``, 1
        where the pre-activation is above 0, else 0, any dtype) into the quadrant counts
        (from three sums: gate, up, both) and each quadrant's top |activation|. While most quadrants of
        the layer hold fewer than ``quadrant_k`` (the first batch) every quadrant takes a top-k; after,
        only values beyond a neuron's threshold are read, and those beyond their own quadrant's are merged
        (``_candidates`` on |activation| less the lesser threshold of the two quadrants of its gate's sign)."""
        a = torch.abs(acts.float().to(self.device), out=self._buffer("abs", acts, torch.float32))
        g, u = gate_pos.to(self.device, torch.float32), up_pos.to(self.device, torch.float32)
        positions = positions.to(self.device)
        n, d = a.shape
        ones = torch.ones(1, n, device=self.device)
        n_g, n_u = (ones @ g).round().long()[0], (ones @ u).round().long()[0]  # exact below 2^24 tokens a batch
        n_gu = (ones @ torch.mul(g, u, out=self._buffer("both", g, torch.float32))).round().long()[0]
        self.quad_count[slot] += torch.stack([n_gu, n_g - n_gu, n_u - n_gu, n - n_g - n_u + n_gu], -1)
        qk = self.quadrant_k
        vals, poss = self.quad_v[slot].view(d * 4, qk), self.quad_p[slot].view(d * 4, qk)
        ctx = None if self.quad_c is None else self.quad_c[slot].view(d * 4, qk, -1)
        threshold = self.quad_v[slot, :, :, -1]  # [d, 4]
        neurons = torch.arange(d, device=self.device)
        if bool(threshold.isinf().float().mean() > 0.5):
            code = (1 - g) * 2 + (1 - u)  # 0: g+u+, 1: g+u-, 2: g-u+, 3: g-u-
            for q in range(4):
                masked = torch.where(code == q, a, -torch.inf)
                # a stable sort, then token order: tied values go to the earlier token, as in one pass
                idx = masked.argsort(dim=0, descending=True, stable=True)[:min(qk, n)].sort(dim=0).values  # [qk, d]
                top = masked.gather(0, idx)
                cand_t = torch.where(top > -torch.inf, idx, -1).T
                keep(vals, poss, ctx, neurons * 4 + q, neurons, top.T.contiguous(), cand_t, positions, True, windows)
            return
        # a value can enter only beyond the lesser threshold of the two quadrants of its gate's sign
        by_gate = threshold.view(d, 2, 2).amin(2).clamp(min=-1)  # [d, (g+, g-)]; -1 for an unfilled one (finite)
        margin = torch.sub(a, by_gate[:, 1], out=self._buffer("margin", a, torch.float32))
        margin.addcmul_(g, by_gate[:, 1] - by_gate[:, 0])
        tok, neuron, _ = self._candidates(margin, torch.zeros_like(by_gate[:, 0]), True, full=True)
        at = tok * d + neuron
        value = a.view(-1).index_select(0, at)
        q = ((1 - g.view(-1).index_select(0, at)) * 2 + (1 - u.view(-1).index_select(0, at))).long()
        enter = (value > threshold.reshape(-1).index_select(0, neuron * 4 + q)).nonzero().squeeze(1)
        if not len(enter):
            return
        row = (neuron * 4 + q).index_select(0, enter)
        order = row.argsort(stable=True)  # tokens stay in order within a row
        rows, cand_v, cand_t = by_row(tok[enter][order], row[order], value[enter][order], -torch.inf)
        keep(vals, poss, ctx, rows, rows // 4, cand_v, cand_t, positions, True, windows)

    def _sample(self, slot: int, a: Tensor, bins: Tensor, positions: Tensor) -> None:
        """Fold the drawable positions (a quarter, by key) into the per-bin reservoirs: each
        (split, neuron, bin) keeps the position with the smallest key, and its activation (read
        where this batch's entry won: a key holds its position, so one entry per cell can)."""
        key = mix(positions) & 0x7FFFFFFF
        pick = (key % SAMPLE_SHARE == 0).nonzero().squeeze(1)
        if not len(pick):
            return
        d = a.shape[1]
        pos = positions.index_select(0, pick)
        combined = ((key.index_select(0, pick) // SAMPLE_SHARE) << 32) | pos
        split = heldout(pos // self.sample_seq_len).long() * (d * N_BINS)
        index = bins.index_select(0, pick).long().add_(split[:, None]).view(-1)
        offered = combined[:, None].expand(-1, d).reshape(-1)
        flat = self.samp[slot].view(-1)
        flat.scatter_reduce_(0, index, offered, "amin")
        won = (flat.gather(0, index) == offered).nonzero().squeeze(1)
        if len(won):
            self.sval[slot].view(-1)[index[won]] = a[pick[won // d], won % d]

    def samples(self) -> dict[str, Tensor]:
        """The drawn samples: ``position`` (-1 where a bin drew none) and ``activation``, each
        ``[layer, split, neuron, bin]``."""
        empty = self.samp == _EMPTY
        return {"position": torch.where(empty, -1, self.samp & _LOW32), "activation": self.sval}

    def _buffer(self, name: str, like: Tensor, dtype: torch.dtype) -> Tensor:
        """A scratch tensor of ``like``'s shape, kept for the next batch of the same shape."""
        buf = self._scratch.get(name)
        if buf is None or buf.shape != like.shape or buf.dtype != dtype or buf.device != like.device:
            buf = self._scratch[name] = torch.empty(like.shape, dtype=dtype, device=like.device)
        return buf

    def _candidates(self, a, threshold, largest: bool, full: bool) -> tuple[Tensor, Tensor, Tensor]:
        """(token, neuron, value) of the values beyond ``threshold``, grouped by neuron with
        tokens in order within each, as the sparse merge needs.

        The tokens are cut into groups of ``GROUP``; a group whose max (for the bottom: min)
        does not pass a neuron's threshold holds no candidate, so only the passing groups are
        compared value by value. While the state is not ``full``, the threshold is tightened by
        the batch's floor: the k-th largest group max is at most the batch's k-th largest value
        (k distinct tokens reach it), so nothing below it can enter. Values equal to it can
        (ties go by position), so the comparison is against the next float below. When many
        groups pass (or the tokens do not split into whole groups) one comparison of every
        value is cheaper."""
        beyond = torch.gt if largest else torch.lt
        n_tok, d = a.shape
        n_groups = n_tok // self.GROUP
        g = a[: n_groups * self.GROUP].view(n_groups, self.GROUP, d)
        g = g.amax(1) if largest else g.amin(1)  # [groups, d]
        if not full and n_groups >= self.k:
            floor = g.topk(self.k, dim=0, largest=largest, sorted=False).values
            floor = floor.amin(0) if largest else floor.amax(0)
            floor = torch.nextafter(floor, torch.full_like(floor, -torch.inf if largest else torch.inf))
            threshold = torch.maximum(threshold, floor) if largest else torch.minimum(threshold, floor)
        neuron, group = beyond(g.T, threshold[:, None]).nonzero(as_tuple=True)  # neuron-major
        if n_groups * self.GROUP < n_tok or len(group) * self.GROUP * 4 > a.numel():
            tok, neuron = beyond(a, threshold, out=self._buffer("mask", a, torch.bool)).nonzero(as_tuple=True)
            order = neuron.argsort(stable=True)  # grouped by neuron, tokens still in order
            tok, neuron = tok[order], neuron[order]
            return tok, neuron, a[tok, neuron]
        tok = (group[:, None] * self.GROUP + torch.arange(self.GROUP, device=a.device)).view(-1)
        neuron = neuron.repeat_interleave(self.GROUP)
        value = a.view(-1).index_select(0, tok * d + neuron)
        keep = beyond(value, threshold.index_select(0, neuron)).nonzero().view(-1)
        return tok.index_select(0, keep), neuron.index_select(0, keep), value.index_select(0, keep)

    def _dense(self, a, rows, largest) -> tuple[Tensor, Tensor]:
        """Each row's top-k of this batch (values, tokens in order); ``topk`` picks among tied values arbitrarily,
        so where the k-th value is tied beyond the k taken a stable sort takes the earliest tokens."""
        sub = a[:, rows].T.contiguous()  # [rows, tokens]
        k = min(self.k, sub.shape[1])
        cand = sub.topk(k, dim=1, largest=largest)
        idx = cand.indices
        kth = cand.values[:, -1:]
        tied = ((sub == kth).sum(1) > (cand.values == kth).sum(1)).nonzero().squeeze(1)
        if tied.numel():
            idx = idx.clone()
            idx[tied] = sub[tied].argsort(dim=1, descending=largest, stable=True)[:, :k]
        idx = idx.sort(dim=1).values  # in token order, as ``keep`` expects of a forward stream
        return sub.gather(1, idx), idx

    def add_tokens(self, n: int) -> None:
        self.count += n

    def merge(self, other: "AtlasReducer") -> None:
        """Fold another reducer's state into this one (exact; any order)."""
        other = other.to(self.device)
        merge_kept((self.top_v, self.top_p, self.top_c), (other.top_v, other.top_p, other.top_c), self.k, True)
        merge_kept((self.bot_v, self.bot_p, self.bot_c), (other.bot_v, other.bot_p, other.bot_c), self.k, False)
        self.hist += other.hist
        self.sum += other.sum.to(self.sum.dtype)
        self.sumsq += other.sumsq.to(self.sum.dtype)
        self.positive += other.positive
        self.count += other.count
        if self.sample_seq_len:
            take = other.samp < self.samp
            self.samp.copy_(torch.where(take, other.samp, self.samp))
            self.sval.copy_(torch.where(take, other.sval, self.sval))
        if self.quadrant_k:
            self.quad_count += other.quad_count
            merge_kept((self.quad_v, self.quad_p, self.quad_c), (other.quad_v, other.quad_p, other.quad_c),
                       self.quadrant_k, True)

    FIELDS = ("top_v", "top_p", "bot_v", "bot_p", "hist", "sum", "sumsq", "positive", "count")
    QUADRANT_FIELDS = ("quad_count", "quad_v", "quad_p")
    SAMPLE_FIELDS = ("samp", "sval", "seq_len")

    @property
    def fields(self) -> tuple[str, ...]:
        contexts = ("top_c", "bot_c") + (("quad_c",) if self.quadrant_k else ()) if self.context_k else ()
        return (self.FIELDS + (self.QUADRANT_FIELDS if self.quadrant_k else ())
                + (self.SAMPLE_FIELDS if self.sample_seq_len else ()) + contexts)

    def state(self) -> dict[str, Tensor]:
        """The state on the host (for checkpoints, Ray and the Result); float64 sums."""
        out = {name: getattr(self, name).detach().to("cpu", copy=True) for name in self.fields}
        out["sum"], out["sumsq"] = out["sum"].double(), out["sumsq"].double()
        return out

    @classmethod
    def from_state(cls, state: dict[str, Tensor], device: torch.device | str = "cpu") -> "AtlasReducer":
        n_layers, d_mlp, k = state["top_v"].shape
        ck, width = state["top_c"].shape[-2:] if "top_c" in state else (0, 1)
        reducer = cls(n_layers, d_mlp, k, device, quadrant_k=state["quad_v"].shape[-1] if "quad_v" in state else 0,
                      sample_seq_len=int(state["seq_len"]) if "seq_len" in state else 0, context_k=ck,
                      width=(width - 1) // 2)
        for name in reducer.fields:
            on = "cpu" if name == "seq_len" else reducer.device
            setattr(reducer, name, state[name].to(on, getattr(reducer, name).dtype, copy=True))
        return reducer

    def to(self, device: torch.device | str) -> "AtlasReducer":
        """This reducer on ``device`` (itself if it is there already)."""
        return self if torch.device(device) == self.device else AtlasReducer.from_state(self.state(), device)

    def quantiles(self, qs: list[float]) -> Tensor:
        """Approximate quantiles from the histogram: the upper edge of the bin where the
        cumulative count crosses q (exact to the bin width; stated in results)."""
        cdf = self.hist.cumsum(-1).double() / self.hist.sum(-1, keepdim=True).clamp(min=1)
        # the overflow bin reports the last edge
        edges = torch.cat([HIST_EDGES, HIST_EDGES[-1:]]).to(self.hist.device, _wide(self.device))
        out = []
        for q in qs:
            idx = (cdf < q).sum(-1).clamp(max=N_BINS - 1)
            out.append(edges[idx])
        return torch.stack(out, -1).float()
