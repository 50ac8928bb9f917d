"""``sampled:N``: text sampled from the model itself, cached by weights hash.

Sampling starts from a handful of neutral openings, at temperature 1 with a fixed
seed, 128 new tokens per document, until N tokens are written. The result is cached
as JSONL under ``$INTERP_HOME/corpora`` so every analysis sees the same text.
"""

from __future__ import annotations

import json

import torch

from interp.models.generation import generate
from interp.paths import interp_home
from interp.progress import bar
from interp.storage.cache import Entry

OPENINGS = ["The", "In", "A", "Once", "It", "When", "This", "One", "I", "We", "There", "After"]
DOC_TOKENS = 128


def _entry(model, n_tokens: int, seed: int) -> Entry:
    return Entry(interp_home(), "corpora", f"sampled-{model.weights_hash}",
                 key={"n_tokens": n_tokens, "seed": seed, "doc_tokens": DOC_TOKENS, "openings": OPENINGS})


def sampling_seconds(model, n_tokens: int, seed: int = 0, batch_size: int = 16) -> float:
    """How long sampling ``n_tokens`` will take (0 when they are cached): one batch's first 8 steps timed, the
    rest of its steps costed by a growing KV cache (linear in the position), times the batches."""
    import time

    if _entry(model, n_tokens, seed).exists():
        return 0.0
    steps = min(DOC_TOKENS, n_tokens)
    start = torch.zeros(batch_size, 1, dtype=torch.long, device=model.device)
    generate(model, start, 2)  # warm-up
    t = time.perf_counter()
    generate(model, start, 8)
    per_step = (time.perf_counter() - t) / 8
    batches = -(-n_tokens // (batch_size * steps))
    return per_step * steps * 1.5 * batches  # the cache grows: later steps cost up to twice the first


def sampled_texts(model, n_tokens: int, seed: int = 0, batch_size: int = 16) -> list[str]:
    entry = _entry(model, n_tokens, seed)
    cached = entry.read(lambda p: [json.loads(line)["text"] for line in
                                   (p / "texts.jsonl").read_text().splitlines() if line])
    if cached is not None:  # a corrupt cache is dropped and resampled
        return cached
    texts: list[str] = []
    written = 0
    generator = torch.Generator().manual_seed(seed)
    with bar(total=n_tokens, desc="sampling corpus from the model", unit="tok", leave=False) as progress:
        while written < n_tokens:
            starts = [OPENINGS[(len(texts) + i) % len(OPENINGS)] for i in range(batch_size)]
            # one token per opening, so every row has the same length (no padding)
            first = [[model.encode(s)[0]] for s in starts]
            new = min(DOC_TOKENS, max(1, n_tokens - written))
            out = generate(model, torch.tensor(first, device=model.device), new, temperature=1.0,
                           generator=generator, on_step=progress.update)  # the bar moves every token
            for row in out:
                texts.append(model.tokenizer.decode(row.tolist(), skip_special_tokens=True))
            written += out.numel()
    with entry.write() as tmp:
        (tmp / "texts.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return texts
