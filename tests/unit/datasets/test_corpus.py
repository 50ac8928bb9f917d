from __future__ import annotations

import json

import pytest

from interp.datasets import load_corpus, token_windows
from interp.errors import InterpError


def test_txt_folder_jsonl_and_join(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.txt").write_text("second")
    (tmp_path / "d" / "a.txt").write_text("first")
    (tmp_path / "c.jsonl").write_text(json.dumps({"text": "third"}) + "\n")
    corpus = load_corpus(f"{tmp_path / 'd'}+{tmp_path / 'c.jsonl'}")
    assert list(corpus) == ["first", "second", "third"]
    assert list(corpus) == ["first", "second", "third"]  # iterable more than once


def test_windows_cover_the_text_without_overlap(tiny_llama, tmp_path):
    (tmp_path / "t.txt").write_text("abcdefghij" * 5)  # 50 bytes + EOS
    windows = list(token_windows(tiny_llama, load_corpus(str(tmp_path / "t.txt")), window=16))
    assert [len(w) for w in windows] == [16, 16, 16]
    flat = [t for w in windows for t in w]
    assert tiny_llama.tokenizer.decode(flat) == ("abcdefghij" * 5)[:48]
    capped = list(token_windows(tiny_llama, load_corpus(str(tmp_path / "t.txt")), window=16, max_tokens=20))
    assert len(capped) == 1


def test_bad_corpora(tiny_llama, tmp_path):
    with pytest.raises(InterpError, match="does not exist"):
        load_corpus(str(tmp_path / "missing.txt"))
    (tmp_path / "ws.txt").write_text("   \n\t ")
    with pytest.raises(InterpError, match="empty"):
        list(token_windows(tiny_llama, load_corpus(str(tmp_path / "ws.txt"))))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(InterpError, match=r"latin1.txt is not UTF-8 text: invalid byte at offset 3"):
        list(load_corpus(str(tmp_path / "latin1.txt")))


def test_stdlib_docs_is_offline_and_large():
    docs = list(load_corpus("stdlib-docs"))
    assert len(docs) > 50 and sum(map(len, docs)) > 300_000


def test_sampled_corpus_is_cached_and_deterministic(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_HOME", str(tmp_path))
    first = list(load_corpus("sampled:64", tiny_llama))
    assert len(first) >= 1 and list((tmp_path / "corpora").glob("sampled-*/texts.jsonl"))
    assert list(load_corpus("sampled:64", tiny_llama)) == first
    with pytest.raises(InterpError, match="N a number"):
        load_corpus("sampled:lots", tiny_llama)
