"""The atlas's per-element work on the CPU, fused into one pass over each layer's activations (numba).

On the CPU, ``interp.tracing.stream.fold`` calls ``fold_reducer`` once per layer and batch, and it calls
``fold_layer``: one compiled loop, parallel over blocks of neurons (each neuron is one thread's, so nothing
races and the order of every sum is fixed), reads each activation once and folds it into every statistic in
place: the histogram bin (from the float bits, as ``bins.hist_bins``), the float64 sums, the count of
positive values, the top/bottom-k with their stored contexts, the per-bin sample reservoir and, for GLU
models, the gate/up sign quadrants' counts and top |activation|. The torch passes (``AtlasReducer.fold``)
do the same in some twenty tensor operations a layer; on two cores they made the atlas slower than the
forward it reads.

A kept list is a row of ``k`` (value, position), best first, ties broken by the smaller position, with an
empty slot's position -1; an entry enters by insertion, so the state after any order of candidates is the
same as the torch path's sort. The stored contexts (the neuron's activations ``width`` tokens either side,
NaN past the window) of the first ``context_k`` are settled once a neuron's batch is folded: an entry from
this batch reads its context from the batch, an older one keeps its own (entries only move down, so the
others never need one). Compiled once per machine (``cache=True``: about 20 s the first time, then read
from numba's cache).
"""

from __future__ import annotations

import threading
from typing import no_type_check

import numba
import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from interp.tracing.bins import LOW_KEY, SHIFT, SIDE, SPAN
from interp.tracing.reducers import SAMPLE_SHARE, AtlasReducer, heldout, mix

BLOCK = 16  # neurons per task: one 64-byte line of each token's row
_LOCK = threading.Lock()  # numba's threading layers do not all take concurrent launches


@njit(cache=True, nogil=True, inline="always")
@no_type_check  # numba compiles these: no runtime type checker (the tests' jaxtyping hook) may wrap them
def _beats(v, p, kept_v, kept_p, largest):
    """Whether (v, p) ranks before a kept entry: an empty slot, a better value, or a tie at a smaller position."""
    if kept_p < 0:
        return True
    if v != kept_v:
        return v > kept_v if largest else v < kept_v
    return p < kept_p


@njit(cache=True, nogil=True)
@no_type_check
def _insert(vals, poss, origin, row, v, p, largest, i):
    """Insert (v, p), token ``i`` of the batch, into kept row ``row`` if it ranks in its k; ``origin`` follows
    the entries (a rank before the batch, or ``-2 - i`` for this batch's token ``i``) for ``_settle``."""
    k = vals.shape[1]
    if not _beats(v, p, vals[row, k - 1], poss[row, k - 1], largest):
        return False
    j = k - 1
    while j > 0 and _beats(v, p, vals[row, j - 1], poss[row, j - 1], largest):
        vals[row, j] = vals[row, j - 1]
        poss[row, j] = poss[row, j - 1]
        origin[j] = origin[j - 1]
        j -= 1
    vals[row, j] = v
    poss[row, j] = p
    origin[j] = -2 - i
    return True


@njit(cache=True, nogil=True)
@no_type_check
def _settle(ctx, row, poss, origin, acts, skip, n, width):
    """The stored contexts of kept row ``row`` after a batch's inserts: each of the first ``context_k`` entries
    moved down from an earlier rank takes that rank's context (entries only move down, so going from the last
    rank up reads each before it is overwritten); one from this batch reads its neuron's activations around its
    token from ``acts`` (NaN past the window)."""
    T = acts.shape[1]
    for r in range(ctx.shape[1] - 1, -1, -1):
        o = origin[r]
        if o == r or poss[row, r] < 0:
            continue
        if o >= 0:
            ctx[row, r, :] = ctx[row, o, :]
        else:
            i = -2 - o
            b, t = i // (T - skip), i % (T - skip) + skip
            for w in range(2 * width + 1):
                at = t - width + w
                ctx[row, r, w] = acts[b, at, n] if 0 <= at < T else np.nan


@njit(cache=True, nogil=True, inline="always")
@no_type_check
def _bin(x):
    """The histogram bin of a float32's bits (``bins.hist_bins``)."""
    key = x >> SHIFT
    mag = min(max((key & 1023) - LOW_KEY, 0), SPAN)
    return (mag ^ (key >> 10)) + SIDE


@njit(cache=True, nogil=True, fastmath={"reassoc"})
@no_type_check
def _moments(row, bits):
    """The sum and sum of squares (float64) of a row and its count of values above +0 (from the bits); the sums
    may be reassociated (they vectorise): their rounding is not the torch path's, nor a fixed order's."""
    total, squares, above = 0.0, 0.0, 0
    for i in range(len(row)):
        v = np.float64(row[i])
        total += v
        squares += v * v
        above += bits[i] > 0
    return total, squares, above


@njit(cache=True, nogil=True)
@no_type_check
def _count_bins(bits, h, scratch):
    """Add each value's histogram bin to ``h``, through four interleaved partial counts (``scratch``,
    ``[4, bins]``): a run of equal bins does not wait on its own increments."""
    scratch[:] = 0
    n, i = len(bits), 0
    while i + 4 <= n:
        scratch[0, _bin(bits[i])] += 1
        scratch[1, _bin(bits[i + 1])] += 1
        scratch[2, _bin(bits[i + 2])] += 1
        scratch[3, _bin(bits[i + 3])] += 1
        i += 4
    for r in range(i, n):
        scratch[0, _bin(bits[r])] += 1
    for c in range(h.shape[0]):
        h[c] += scratch[0, c] + scratch[1, c] + scratch[2, c] + scratch[3, c]


@njit(cache=True, nogil=True)
@no_type_check
def _screen(row, top, bottom, cand):
    """The indices of a row's values at or beyond its top or bottom floor, into ``cand``; their count.
    Branch-free: every index is written, and the count advances where one passes."""
    count = 0
    for i in range(len(row)):
        v = row[i]
        cand[count] = i
        count += (v >= top) | (v <= bottom)
    return count


@njit(cache=True, nogil=True)
@no_type_check
def _screen_glu(row, gates, top, bottom, pos_floor, neg_floor, cand):
    """``_screen``, and the values whose |activation| reaches the quadrant floor of their gate's sign."""
    count = 0
    for i in range(len(row)):
        v = row[i]
        cand[count] = i
        count += (v >= top) | (v <= bottom) | (abs(v) >= (pos_floor if gates[i] > 0 else neg_floor))
    return count


@njit(cache=True, nogil=True, inline="always")
@no_type_check
def _gather(acts, n0, m, skip, buf):
    """Columns ``n0 : n0 + m`` of every token, neuron-major, into ``buf``."""
    B, T = acts.shape[0], acts.shape[1]
    i = 0
    for b in range(B):
        for t in range(skip, T):
            for j in range(m):
                buf[j, i] = acts[b, t, n0 + j]
            i += 1


@njit(cache=True, nogil=True)
@no_type_check
def _signs(gates, ups):
    """The number of tokens where the gate, the up projection and both are above 0 (0 counts as -)."""
    g, u, both = 0, 0, 0
    for i in range(len(gates)):
        gp, up = gates[i] > 0, ups[i] > 0
        g += gp
        u += up
        both += gp & up
    return g, u, both


@njit(cache=True, nogil=True)
@no_type_check
def _draw(row, bits, picks, combined, keys, values):
    """Offer the drawable tokens (``picks``, their ``combined`` key) to one split's reservoirs of one neuron
    (``keys``, ``values``: ``[bins]``): each bin keeps the smallest key and its activation. Branch-free."""
    for s in range(len(picks)):
        i = picks[s]
        bin_ = _bin(bits[i])
        held, offered = keys[bin_], combined[s]
        won = offered < held
        keys[bin_] = offered if won else held
        values[bin_] = row[i] if won else values[bin_]


@njit(parallel=True, cache=True, nogil=True)
@no_type_check
def _fold_layer(acts, skip, positions, picks, combined, n_train, gate, up, width, work_acts, work_pre, work_bins,
                work_cand, top_v, top_p, top_c, bot_v, bot_p, bot_c, hist, s1, s2, positive, samp, sval,
                quad_count, quad_v, quad_p, quad_c):
    B, T, d = acts.shape
    N = B * (T - skip)
    k, qk = top_v.shape[1], quad_v.shape[1]
    glu, sampling = gate.shape[0] > 0, samp.shape[0] > 0
    for block in prange((d + BLOCK - 1) // BLOCK):
        n0 = block * BLOCK
        m = min(d, n0 + BLOCK) - n0
        # the block's columns, neuron-major: a 64-byte line of each token's row, read once
        me = numba.get_thread_id()  # a thread's scratch stays in its cache from block to block
        buf, gates, ups = work_acts[me], work_pre[me, 0], work_pre[me, 1]
        scratch, cand = work_bins[me], work_cand[me]
        if m == BLOCK:  # a constant width: the copies vectorise
            _gather(acts, n0, BLOCK, skip, buf)
            if glu:
                _gather(gate, n0, BLOCK, skip, gates)
                _gather(up, n0, BLOCK, skip, ups)
        else:
            _gather(acts, n0, m, skip, buf)
            if glu:
                _gather(gate, n0, m, skip, gates)
                _gather(up, n0, m, skip, ups)
        bits = buf.view(np.int32)
        floor = np.full(4, np.inf, dtype=np.float32)  # a neuron's k-th |activation| in each quadrant (GLU)
        top_from, bot_from = np.empty(k, dtype=np.int64), np.empty(k, dtype=np.int64)  # see _insert
        quad_from = np.empty((4, qk), dtype=np.int64)
        for j in range(m):
            n = n0 + j
            row, row_bits = buf[j], bits[j]
            total, squares, above = _moments(row, row_bits)
            s1[n] += total
            s2[n] += squares
            positive[n] += above
            _count_bins(row_bits, hist[n], scratch)
            top, bottom = top_v[n, k - 1], bot_v[n, k - 1]
            if glu:  # quadrants 0: g+u+, 1: g+u-, 2: g-u+, 3: g-u-
                g, u, both = _signs(gates[j], ups[j])
                quad_count[n, 0] += both
                quad_count[n, 1] += g - both
                quad_count[n, 2] += u - both
                quad_count[n, 3] += N - g - u + both
                # a value can enter only beyond the lesser floor of the two quadrants of its gate's sign
                for q in range(4):
                    floor[q] = quad_v[n * 4 + q, qk - 1]
                count = _screen_glu(row, gates[j], top, bottom, min(floor[0], floor[1]), min(floor[2], floor[3]),
                                    cand)
            else:
                count = _screen(row, top, bottom, cand)
            for r in range(k):
                top_from[r] = r
                bot_from[r] = r
            moved_top = moved_bot = moved_quad = False
            for c in range(count):  # the values beyond a floor when the screen ran; floors only rise as they enter
                i = cand[c]
                v = row[i]
                if v >= top_v[n, k - 1]:
                    moved_top |= _insert(top_v, top_p, top_from, n, v, positions[i], True, i)
                if v <= bot_v[n, k - 1]:
                    moved_bot |= _insert(bot_v, bot_p, bot_from, n, v, positions[i], False, i)
                if glu:
                    q = 2 * (gates[j, i] <= 0) + (ups[j, i] <= 0)
                    if abs(v) >= quad_v[n * 4 + q, qk - 1]:
                        if not moved_quad:
                            for qq in range(4):
                                for r in range(qk):
                                    quad_from[qq, r] = r
                            moved_quad = True
                        _insert(quad_v, quad_p, quad_from[q], n * 4 + q, abs(v), positions[i], True, i)
            if moved_top:
                _settle(top_c, n, top_p, top_from, acts, skip, n, width)
            if moved_bot:
                _settle(bot_c, n, bot_p, bot_from, acts, skip, n, width)
            if moved_quad:
                for q in range(4):
                    _settle(quad_c, n * 4 + q, quad_p, quad_from[q], acts, skip, n, width)
            if sampling:  # the drawable tokens, train split first
                _draw(row, row_bits, picks[:n_train], combined[:n_train], samp[0, n], sval[0, n])
                _draw(row, row_bits, picks[n_train:], combined[n_train:], samp[1, n], sval[1, n])


def fold_layer(acts: np.ndarray, skip: int, positions: np.ndarray, picks: np.ndarray, combined: np.ndarray,
               n_train: int, gate: np.ndarray, up: np.ndarray, width: int, state: dict[str, np.ndarray],
               threads: int, work: dict[str, np.ndarray]) -> None:
    """Fold one layer's ``[batch, seq, d_mlp]`` float32 activations (positions ``skip`` on of each window,
    global ``positions`` in order) into ``state``'s arrays in place (one slot of an ``AtlasReducer``, as
    numpy views: see its ``fold``). ``picks``, ``combined``: the tokens drawable as samples (their index among
    the batch's) and their (key << 32 | position), the first ``n_train`` in the train split, the rest held out
    (empty without samples); ``gate``, ``up``: the layer's pre-activations (empty without quadrants);
    ``threads``: as many as torch runs; ``work``: scratch arrays kept between calls (made here)."""
    B, T, _ = acts.shape
    slots, N = numba.config.NUMBA_NUM_THREADS, B * (T - skip)  # thread ids run below it
    shapes = {"acts": ((slots, BLOCK, N), np.float32), "pre": ((slots, 2, BLOCK, N if len(gate) else 0), np.float32),
              "bins": ((slots, 4, state["hist"].shape[1]), np.int32), "cand": ((slots, N), np.int32)}
    for name, (shape, dtype) in shapes.items():  # kept between calls: fresh pages cost more than the work
        if work.get(name) is None or work[name].shape != shape:
            work[name] = np.empty(shape, dtype=dtype)
    with _LOCK:
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
        _fold_layer(acts, skip, positions, picks, combined, n_train, gate, up, width, work["acts"], work["pre"],
                    work["bins"], work["cand"], *(state[name] for name in STATE))


STATE = ("top_v", "top_p", "top_c", "bot_v", "bot_p", "bot_c", "hist", "sum", "sumsq", "positive", "samp", "sval",
         "quad_count", "quad_v", "quad_p", "quad_c")  # fold_layer's state arrays, in the kernel's order


def _host(x: Tensor, dtype=torch.float32) -> np.ndarray:
    return x.detach().to("cpu", dtype).contiguous().numpy()


def fold_reducer(reducer: AtlasReducer, slot: int, act: Tensor, positions: Tensor, skip: int, gate: Tensor | None,
                 up: Tensor | None) -> None:
    """``AtlasReducer.fold`` on the CPU: its state's slot as numpy views, folded in place by ``fold_layer``
    (activations of any float dtype are read as float32, as the torch passes read them)."""
    positions = positions.to("cpu", torch.long)
    picks, combined, n_train = _drawable(reducer, positions)
    d = act.shape[-1]
    none = {"top_c": np.empty((d, 0, 1), dtype=np.float32), "samp": np.empty((0, 0, 0), dtype=np.int64),
            "sval": np.empty((0, 0, 0), dtype=np.float32), "quad_count": np.empty((0, 4), dtype=np.int64),
            "quad_v": np.empty((0, 1), dtype=np.float32), "quad_p": np.empty((0, 1), dtype=np.int64),
            "quad_c": np.empty((0, 0, 1), dtype=np.float32)}
    none["bot_c"] = none["top_c"]
    state = {}
    for name in STATE:
        held = getattr(reducer, name, None)
        if held is None:
            state[name] = none[name]
        elif name in ("quad_v", "quad_p", "quad_c"):  # a row per (neuron, quadrant)
            state[name] = held[slot].flatten(0, 1).numpy()
        else:
            state[name] = held[slot].numpy()
    gate, up = (_host(gate), _host(up)) if reducer.quadrant_k else (np.empty((0, 0, 0), dtype=np.float32),) * 2
    fold_layer(_host(act), skip, _host(positions, torch.long), picks, combined, n_train, gate, up, reducer.width,
               state, torch.get_num_threads(), reducer._work)


def _drawable(reducer: AtlasReducer, positions: Tensor) -> tuple[np.ndarray, np.ndarray, int]:
    """The tokens drawable as samples (as in ``AtlasReducer._sample``), the train split's first: their indices,
    their (key << 32 | position) and the train split's count; kept for the batch's other layers."""
    if not reducer.sample_seq_len:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), 0
    kept = reducer._drawn
    if kept is not None and kept[0] is positions and torch.equal(kept[1], positions):
        return kept[2]
    key = mix(positions) & 0x7FFFFFFF
    pick = (key % SAMPLE_SHARE == 0).nonzero().squeeze(1)
    pos = positions.index_select(0, pick)
    held = heldout(pos // reducer.sample_seq_len)
    order = held.argsort(stable=True)
    pick, pos = pick[order], pos[order]
    drawn = pick.numpy(), (((key[pick] // SAMPLE_SHARE) << 32) | pos).numpy(), int((~held).sum())
    reducer._drawn = positions, positions.clone(), drawn
    return drawn
