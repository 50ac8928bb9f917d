"""A corpus-scale atlas on this machine: ``interp atlas`` over a million tokens of real text, end to end.

    python benchmarks/atlas_at_scale.py --corpus /usr/share/vim/vim90/doc --tokens 1000000

(Vim's manual: 151 files, 9.5 MB of English documentation, a folder of .txt any Debian machine with Vim
has; any folder of .txt files, .jsonl or ``hf:NAME`` corpus will do.) Run it in the background; it
checkpoints every ``--checkpoint-every`` batches, and the same command resumes a killed run.

First it times plain forward passes over a sample of the same windows (``--baseline-batches`` batches
spread evenly over the corpus), in the same process; then the whole command, stored like any run. It
prints and records (``benchmarks/results/atlas-scale-<model>.json``) the wall time, tokens/s and their
ratio to the plain forward's; a resumed run counts only the batches this invocation ran.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import torch

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--corpus", default="/usr/share/vim/vim90/doc")
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--checkpoint-every", type=int, default=100)
    ap.add_argument("--baseline-batches", type=int, default=16)
    args = ap.parse_args()

    import interp
    from interp.analyses.neurons import atlas

    model = interp.load_model(args.model)
    config = atlas.AtlasConfig(corpus=args.corpus, n_tokens=args.tokens, checkpoint_every=args.checkpoint_every)
    t = time.perf_counter()
    tokens = atlas.plan(model, config)
    read_s = time.perf_counter() - t
    B = config.batch_size
    n_batches = -(-len(tokens) // B)
    sample = torch.linspace(0, n_batches - 1, args.baseline_batches).long().unique().tolist()
    with torch.no_grad():
        model(tokens[:B])  # warm-up
        t = time.perf_counter()
        for b in sample:
            model(tokens[b * B:(b + 1) * B])
        plain_s = time.perf_counter() - t
    plain_tok_s = sum(len(tokens[b * B:(b + 1) * B]) for b in sample) * config.seq_len / plain_s
    print(f"{args.model}: {tokens.numel():,} tokens of {args.corpus} in {len(tokens):,} windows (read and "
          f"tokenized in {read_s:.0f} s); plain forward {plain_tok_s:.0f} tok/s over {len(sample)} batches",
          flush=True)

    done = atlas._checkpoint(model, config).read(atlas._read_checkpoint)
    resumed = len(done[1]) if done else 0
    t = time.perf_counter()
    result = interp.run("neuron_atlas", model, config)
    whole = time.perf_counter() - t
    ran = (n_batches - resumed) * B * config.seq_len
    tok_s = ran / whole
    print(f"{args.model}: `interp atlas` over {result.metrics['tokens']:,} counted tokens in {whole / 60:.1f} min "
          f"({tok_s:.0f} tok/s{f', {resumed} batches resumed' if resumed else ''}); "
          f"{tok_s / plain_tok_s:.2f}x the plain forward's throughput; stored {result.path}", flush=True)
    sys.path.insert(0, os.path.dirname(__file__))
    from record import save

    save(f"atlas-scale-{args.model}",
         f"{tokens.numel() / 1e6:.2f}M tokens in {whole / 60:.0f} min, {tok_s:.0f} tok/s "
         f"({tok_s / plain_tok_s:.2f}× the plain forward's {plain_tok_s:.0f} tok/s)",
         {"tokens": tokens.numel(), "minutes": round(whole / 60, 1), "tok_s": round(tok_s),
          "plain_tok_s": round(plain_tok_s), "ratio": round(tok_s / plain_tok_s, 3), "resumed_batches": resumed,
          "corpus": args.corpus},
         f"python benchmarks/atlas_at_scale.py --model {args.model} --corpus {args.corpus} --tokens {args.tokens}", [
             "benchmarks/atlas_at_scale.py", "interp/analyses/neurons/atlas.py", "interp/tracing/reducers.py",
             "interp/tracing/fused.py",
             "interp/tracing/topk.py", "interp/tracing/stream.py"])


if __name__ == "__main__":
    main()
