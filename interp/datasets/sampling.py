"""``sampled:N``: text sampled from the model itself, cached by weights hash.

Sampling starts from a handful of neutral openings, at temperature 1 with a fixed
seed, 128 new tokens per document, until N tokens are written. The result is cached
as JSONL under ``$INTERP_HOME/corpora`` so every analysis sees the same text.
"""

from __future__ import annotations

import json
import os
import tempfile

import torch
from tqdm.auto import tqdm

from interp.generation import generate
from interp.models.loading import interp_home

OPENINGS = ["The", "In", "A", "Once", "It", "When", "This", "One", "I", "We", "There", "After"]
DOC_TOKENS = 128


def sampled_texts(model, n_tokens: int, seed: int = 0, batch_size: int = 16) -> list[str]:
    path = interp_home() / "corpora" / f"sampled-{model.weights_hash}-{n_tokens}-seed{seed}.jsonl"
    if path.is_file():
        try:
            return [json.loads(line)["text"] for line in path.read_text().splitlines() if line]
        except (json.JSONDecodeError, KeyError):
            path.unlink()  # a corrupt cache: resample
    texts: list[str] = []
    written = 0
    generator = torch.Generator().manual_seed(seed)
    with tqdm(total=n_tokens, desc="sampling corpus from the model", unit="tok", leave=False) as bar:
        while written < n_tokens:
            starts = [OPENINGS[(len(texts) + i) % len(OPENINGS)] for i in range(batch_size)]
            # one token per opening, so every row has the same length (no padding)
            first = [[model.encode(s)[0]] for s in starts]
            new = min(DOC_TOKENS, max(1, n_tokens - written))
            out = generate(model, torch.tensor(first, device=model.device), new, temperature=1.0,
                           generator=generator)
            for row in out:
                texts.append(model.tokenizer.decode(row.tolist(), skip_special_tokens=True))
            written += out.numel()
            bar.update(out.numel())
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in texts)
    os.replace(f.name, path)
    return texts
