from __future__ import annotations

import json

import pytest

from interp.datasets import load_facts, load_pairs, subject_positions
from interp.errors import InterpError


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_facts_load_and_validate(tmp_path):
    ok = {"prompt": "The capital of France is", "subject": "France", "answer": " Paris", "relation": "capital"}
    facts = load_facts(_write(tmp_path / "f.jsonl", [json.dumps(ok), "", json.dumps(ok)]))
    assert len(facts) == 2 and facts[0].answer == " Paris"


@pytest.mark.parametrize("line, message", [
    ("{not json", r"f.jsonl:2: not valid JSON"),
    ('["a list"]', r"f.jsonl:2: expected a JSON object"),
    ('{"prompt": "x", "subject": "x", "answer": " y"}', r"f.jsonl:2: missing field 'relation'"),
    ('{"prompt": "x", "subject": "x", "answer": "", "relation": "r"}', r"f.jsonl:2: field 'answer' must be"),
    ('{"prompt": "x", "subject": 3, "answer": "a", "relation": "r"}', r"f.jsonl:2: field 'subject' must be"),
])
def test_malformed_lines_are_named_by_file_line_and_field(tmp_path, line, message):
    ok = '{"prompt": "a b", "subject": "a", "answer": " c", "relation": "r"}'
    with pytest.raises(InterpError, match=message):
        load_facts(_write(tmp_path / "f.jsonl", [ok, line]))


def test_subject_must_be_in_prompt(tmp_path):
    bad = {"prompt": "The capital of France is", "subject": "Spain", "answer": " Paris", "relation": "c"}
    with pytest.raises(InterpError, match="'Spain' is not in the prompt"):
        load_facts(_write(tmp_path / "f.jsonl", [json.dumps(bad)]))


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InterpError, match="does not exist"):
        load_pairs(tmp_path / "nope.jsonl")
    with pytest.raises(InterpError, match="empty"):
        load_pairs(_write(tmp_path / "e.jsonl", [""]))
    with pytest.raises(InterpError, match="no built-in set"):
        load_facts("builtin:does-not-exist")


def test_pairs(tmp_path):
    rec = {"clean": "When Mary and John went, John gave it to", "corrupt": "When Mary and John went, Anna gave it to",
           "answer": " Mary", "wrong": " John"}
    assert load_pairs(_write(tmp_path / "p.jsonl", [json.dumps(rec)]))[0].wrong == " John"


def test_subject_positions(tiny_llama):
    # byte tokenizer: one token per character
    assert subject_positions(tiny_llama, "in Paris now", "Paris") == [3, 4, 5, 6, 7]
    assert subject_positions(tiny_llama, "in Paris", "Paris", prepend_bos=True) == [4, 5, 6, 7, 8]
    with pytest.raises(InterpError, match="tokens are"):
        subject_positions(tiny_llama, "in Paris", "Rome")
