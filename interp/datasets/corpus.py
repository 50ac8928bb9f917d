"""Corpus sources, streamed as documents and cut into token windows.

Sources (``load_corpus(src)``):

- a ``.txt`` file, or a folder of ``.txt`` files (sorted, recursive): one document each;
- a ``.jsonl`` file whose records have a ``text`` field;
- ``hf:NAME[:SPLIT]``: a Hugging Face dataset with a ``text`` column (online only);
- ``stdlib-docs``: the English documentation that ships inside Python
  (``pydoc_data.topics``), about 100k tokens, offline;
- ``sampled:N``: N tokens sampled from the loaded model itself (temperature 1, seed 0),
  cached under ``$INTERP_HOME/corpora``. Text a model writes approximates its training
  distribution; analyses that use it say so.

Several sources join with ``+`` (``stdlib-docs+sampled:20000``).

Windows (``token_windows``): documents are tokenized, joined with the EOS token
between them and cut into consecutive windows of ``window`` tokens with no overlap.
A document longer than a window continues in the next one, so no text is dropped;
the first tokens of each window see less context. Files must be UTF-8: a file that
is not gets an error naming it and the byte offset.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from interp.errors import InterpError


@dataclass
class Corpus:
    name: str
    docs: Callable[[], Iterator[str]]  # a fresh iterator each call

    def __iter__(self) -> Iterator[str]:
        return self.docs()


def load_corpus(source: str, model=None) -> Corpus:
    parts = [p.strip() for p in str(source).split("+") if p.strip()]
    if not parts:
        raise InterpError("no corpus given: name a .txt/.jsonl path, stdlib-docs, sampled:N or hf:NAME")
    corpora = [_one(p, model) for p in parts]
    if len(corpora) == 1:
        return corpora[0]
    return Corpus("+".join(c.name for c in corpora), lambda: (d for c in corpora for d in c))


def _one(source: str, model) -> Corpus:
    if source == "stdlib-docs":
        return Corpus(source, _stdlib_docs)
    if source.startswith("sampled:"):
        return _sampled(source, model)
    if source.startswith("hf:"):
        return _hf(source)
    path = Path(source).expanduser()
    if not path.exists():
        raise InterpError(f"corpus path {source!r} does not exist (sources: a .txt file or folder, "
                          "a .jsonl with a 'text' field, stdlib-docs, sampled:N, hf:NAME)")
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise InterpError(f"corpus folder {source!r} holds no .txt files")
        return Corpus(source, lambda: (_read_text(f) for f in files))
    if path.suffix == ".jsonl":
        return Corpus(source, lambda: _jsonl_texts(path))
    return Corpus(source, lambda: iter([_read_text(path)]))


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:  # a link that loops or points nowhere, a file that vanished, no permission
        raise InterpError(f"cannot read corpus file {str(path)!r}: {exc.strerror or type(exc).__name__}") from None
    try:
        return data.decode("utf-8-sig")  # a byte-order mark is not text
    except UnicodeDecodeError as exc:
        raise InterpError(f"{path} is not UTF-8 text: invalid byte at offset {exc.start}; "
                          "convert it (e.g. iconv -t UTF-8) first") from None


def _jsonl_texts(path: Path) -> Iterator[str]:
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            text = json.loads(line).get("text")
        except (json.JSONDecodeError, AttributeError, RecursionError):
            raise InterpError(f"{path}:{number}: not a JSON object") from None
        if not isinstance(text, str):
            raise InterpError(f"{path}:{number}: missing string field 'text'")
        yield text


def _stdlib_docs() -> Iterator[str]:
    from pydoc_data.topics import topics

    for key in sorted(topics):
        yield topics[key]


def _hf(source: str) -> Corpus:
    _, name, *rest = source.split(":")
    split = rest[0] if rest else "train"

    def docs():
        try:
            import datasets
        except ImportError:
            raise InterpError("hf: corpora need the `datasets` package (pip install datasets)") from None
        try:
            ds = datasets.load_dataset(name, split=split, streaming=True)
        except Exception as exc:
            raise InterpError(f"cannot load Hugging Face dataset {name!r} ({type(exc).__name__}); "
                              "this needs the network") from None
        for row in ds:
            yield row["text"]

    return Corpus(source, docs)


def _sampled(source: str, model) -> Corpus:
    try:
        n_tokens = int(source.split(":", 1)[1])
    except ValueError:
        raise InterpError(f"cannot read {source!r}: write sampled:N with N a number of tokens") from None
    if n_tokens <= 0:
        raise InterpError("sampled:N needs N > 0 tokens")
    if model is None:
        raise InterpError("sampled:N needs a model to sample from")
    from interp.datasets.sampling import sampled_texts

    return Corpus(source, lambda: iter(sampled_texts(model, n_tokens)))


def token_windows(model, corpus: Corpus, window: int = 128, max_tokens: int | None = None) -> Iterator[list[int]]:
    """Consecutive ``window``-token windows over the corpus (see the module docstring)."""
    if window < 2 or window > model.n_ctx:
        raise InterpError(f"window {window} must be between 2 and the context ({model.n_ctx})")
    eos = model.tokenizer.eos_token_id
    # the model's BOS policy, as for prompts (model.encode): a model that needs BOS (Gemma, Llama 3)
    # gets it at the start of every window, so no window is read out of distribution
    head = [model.tokenizer.bos_token_id] if model.prepends_bos else []
    take = window - len(head)
    buffer: list[int] = []
    emitted = 0
    any_text = False
    for doc in corpus:
        if not doc.strip():
            continue
        any_text = True
        buffer.extend(model.tokenizer(doc, add_special_tokens=False)["input_ids"])
        if eos is not None:
            buffer.append(eos)
        while len(buffer) >= take:
            if max_tokens is not None and emitted + window > max_tokens:
                return
            yield head + buffer[:take]
            emitted += window
            buffer = buffer[take:]
    if not any_text:
        raise InterpError(f"corpus {corpus.name!r} is empty (or only whitespace)")
    if buffer and (max_tokens is None or emitted + len(buffer) <= max_tokens) and emitted == 0:
        yield head + buffer  # a corpus shorter than one window still yields its tokens


def window_tensor(model, source: str, seq_len: int, n_tokens: int):
    """The first ``n_tokens`` of corpus ``source`` as full ``[n_windows, seq_len]`` windows
    (the same tensor on every run; a short tail is dropped)."""
    import torch

    if n_tokens < seq_len:
        raise InterpError(f"n_tokens ({n_tokens}) must be at least one window of seq_len={seq_len}")
    windows = [w for w in token_windows(model, load_corpus(source, model), seq_len, n_tokens) if len(w) == seq_len]
    if not windows:
        raise InterpError(f"corpus {source!r} has fewer than {seq_len} tokens; at least one full window is needed")
    return torch.tensor(windows, dtype=torch.long, device="cpu")
