"""Benchmark at the scale users run: random-weight models with real configs, built on the device.

    python benchmarks/gpu_shapes.py [--device cuda] [--shapes llama-3.2-1b,llama-3.1-8b] [--dtype bfloat16]
                                    [--tokens 65536] [--batch 32] [--pairs 16] [--embedded smollm2-135m]

Timing depends on shapes, not on trained values, so a random model with Llama-3.2-1B's or
Llama-3.1-8B's config (bf16, weights initialised in place on the device, no download) is
an honest stand-in for decoding and patching. For the atlas, random weights make the
top-k thresholds unrealistic; ``--embedded`` adds the trained embedded models on the same
device for that. Each figure is measured in one run against a baseline of the same shapes:

- decoding every neuron's output side (top/bottom-20 tokens and the inverted index, the
  analysis's own ``decode_block``) against bare GEMMs of the same chunks; in float32 as
  the analysis runs, and on CUDA also with TF32 matmuls;
- the atlas (``stream_batches`` with the reducers on the device, every layer) over a fixed
  token budget, against plain forward passes of the same batches, alternating per batch;
- RelP against activation patching over MLP outputs, for IOI-shaped random pairs (time);
- peak device memory of each (CUDA; on the CPU, peak RSS of the process).

``--shapes tiny --device cpu`` runs the same code on a 2-layer model in seconds (a test
runs it so the script cannot rot).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import warnings

import torch

warnings.filterwarnings("ignore")

COMMON = dict(hidden_act="silu", bos_token_id=0, eos_token_id=1, pad_token_id=2, rope_theta=500000.0,
              max_position_embeddings=8192)
SHAPES = {  # the published configs' shapes
    "llama-3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=64, vocab_size=128256, tie_word_embeddings=True),
    "llama-3.1-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=128, vocab_size=128256, tie_word_embeddings=False),
    "tiny": dict(hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, vocab_size=259, tie_word_embeddings=True),
}


def build(shape: str, device: str, dtype: torch.dtype):
    """A random model of ``shape``, its weights initialised in place on ``device`` in ``dtype``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from interp.models.model import Model
    from interp.models.tiny import byte_tokenizer

    config = LlamaConfig(**SHAPES[shape], **COMMON)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            hf = LlamaForCausalLM(config).eval()
    finally:
        torch.set_default_dtype(default)
    return Model.wrap(shape, f"interp/{shape}-shape", hf, byte_tokenizer(), source="random",
                      known_hash=f"random-{shape}")


class Meter:
    """Wall time (synchronised) and peak memory of a block, on the model's device."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) / 2**30
        else:
            self.peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        self.seconds = time.perf_counter() - self.t


def decoding(model) -> list[str]:
    from interp.analyses.neurons.decoding import CHUNK, decode_block, side_basis, side_vectors

    k, V = 20, model.d_vocab
    basis = side_basis(model, "out", True).float()
    layers = [side_vectors(model, l, "out", True).float() for l in range(model.n_layers)]  # as the analysis reads them
    out = []
    modes = [("fp32", "highest")] + ([("tf32", "high")] if model.device.type == "cuda" else [])
    for label, precision in modes:
        torch.set_float32_matmul_precision(precision)
        for _ in range(2):  # the first pass warms kernels up; the second is reported
            with Meter(model.device) as gemm:
                for vectors in layers:
                    for start in range(0, vectors.shape[0], CHUNK):
                        vectors[start:start + CHUNK] @ basis
            promoters = (torch.full((k, V), -torch.inf, device=model.device),
                         torch.zeros((k, V), dtype=torch.long, device=model.device))
            with Meter(model.device) as full:
                for l, vectors in enumerate(layers):
                    decode_block(vectors, basis, k, CHUNK, promoters, offset=l * model.d_mlp)
        n = model.n_layers * model.d_mlp
        out.append(f"  decoding {n:,} neurons ({label})   {full.seconds:8.2f} s   bare GEMMs {gemm.seconds:7.2f} s   "
                   f"{full.seconds / gemm.seconds:.2f}x the GEMM time   peak {full.peak:.1f} GB")
    torch.set_float32_matmul_precision("highest")
    return out


def atlas(model, n_tokens: int, batch: int) -> list[str]:
    from interp.tracing.reducers import AtlasReducer
    from interp.tracing.stream import stream_batches

    T = 128
    windows = max(batch, n_tokens // T // batch * batch)
    tokens = torch.randint(3, model.d_vocab, (windows, T), generator=torch.Generator().manual_seed(0))
    layers = list(range(model.n_layers))
    reducer = AtlasReducer(len(layers), model.d_mlp, 20, model.device)
    plain = run = 0.0
    peak_plain = peak_atlas = 0.0
    with torch.no_grad():
        model(tokens[:batch])  # warm-up
        for b in range(windows // batch):
            with Meter(model.device) as m:
                model(tokens[b * batch:(b + 1) * batch])
            plain, peak_plain = plain + m.seconds, max(peak_plain, m.peak)
            with Meter(model.device) as m:
                stream_batches(model, tokens, layers, batch, [b], reducer, disable=True)
            run, peak_atlas = run + m.seconds, max(peak_atlas, m.peak)
    n = windows * T
    return [f"  atlas, {n:,} tokens in batches of {batch} x {T}: plain {n / plain:9.0f} tok/s, "
            f"atlas {n / run:9.0f} tok/s   {plain / run:.2f}x the plain forward   "
            f"peak {peak_atlas:.1f} GB (plain {peak_plain:.1f} GB)"]


def patching(model, n_pairs: int) -> list[str]:
    from interp.analyses.patching.engine import Batch, PatchingConfig, activation_scores, baseline, gradient_scores
    from interp.datasets.prompts import Pair

    T, dev = 18, model.device  # IOI prompts are 15-20 tokens
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(3, model.d_vocab, (n_pairs, T), generator=g)
    corrupt = clean.clone()
    corrupt[:, 2] = torch.randint(3, model.d_vocab, (n_pairs,), generator=g)  # the "name" swap
    answer, wrong = torch.randint(3, model.d_vocab, (2, n_pairs), generator=g)
    batch = Batch(clean.to(dev), corrupt.to(dev), torch.full((n_pairs,), T, device=dev), answer.to(dev),
                  wrong.to(dev))
    layers = list(range(model.n_layers))
    pairs = [Pair(str(i), str(i), "a", "b") for i in range(n_pairs)]  # only names the checkpoint key
    out, times = [], {}
    for method in ("relp", "activation"):
        config = PatchingConfig(method=method, components=("mlp_out",), checkpoint_every=0,
                                batch_rows=512 if dev.type == "cuda" else 128)
        with Meter(dev) as m:
            b = baseline(model, config, batch, layers)
            if method == "activation":
                activation_scores(model, config, batch, layers, b.base_metric, b.source_acts, b.clean_last, pairs)
            else:
                gradient_scores(model, config, batch, layers, b.metric, b.source_acts)
        times[method] = m.seconds
        out.append(f"  patching mlp_out, {n_pairs} pairs x {T} tokens: {method:<10} {m.seconds:8.2f} s   "
                   f"peak {m.peak:.1f} GB")
    out.append(f"  RelP is {times['activation'] / times['relp']:.0f}x faster than activation patching here")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--shapes", default="llama-3.2-1b,llama-3.1-8b")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--tokens", type=int, default=65_536, help="atlas token budget")
    ap.add_argument("--batch", type=int, default=32, help="atlas windows per forward pass")
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--embedded", default="", help="also these embedded models (trained weights), comma-separated")
    ap.add_argument("--skip", default="", help="parts to skip: decoding, atlas, patching")
    args = ap.parse_args()

    import os

    os.environ.setdefault("INTERP_RUNS", tempfile.mkdtemp(prefix="gpu-shapes-"))
    import interp

    dtype = getattr(torch, args.dtype)
    cuda = args.device.startswith("cuda")
    name = torch.cuda.get_device_name(0) if cuda else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; {args.dtype}")
    skip = set(filter(None, args.skip.split(",")))
    specs = [("shape", s) for s in filter(None, args.shapes.split(","))]
    specs += [("embedded", s) for s in filter(None, args.embedded.split(","))]
    for kind, spec in specs:
        t = time.perf_counter()
        model = build(spec, args.device, dtype) if kind == "shape" else interp.load_model(spec, device=args.device,
                                                                                         dtype=dtype)
        print(f"{spec} ({kind}; {model.n_layers} layers x {model.d_mlp:,} neurons, d_model {model.d_model:,}, "
              f"vocab {model.d_vocab:,}; built in {time.perf_counter() - t:.0f} s)", flush=True)
        parts = {"decoding": (decoding, ()), "atlas": (atlas, (args.tokens, args.batch)),
                 "patching": (patching, (args.pairs,))}
        for part, (fn, extra) in parts.items():
            if part not in skip:
                print("\n".join(fn(model, *extra)), flush=True)
        del model
        if cuda:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
