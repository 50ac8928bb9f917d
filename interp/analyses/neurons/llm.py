"""Explanations written by an LLM: any OpenAI-compatible chat endpoint (vLLM, llama.cpp's server,
ollama), or the embedded SmolLM2-135M-Instruct in process (``local``).

The prompt follows OpenAI's neuron explainer (Bills et al. 2023) in spirit, shortened for small models:
the neuron's top activating contexts from the atlas's train split, the activating token marked
``<<like this>>``, and its most frequent activating tokens; the answer is one short phrase. Every
request and its answer are cached under ``$INTERP_HOME/llm/`` by the hash of (explainer, request), so
a rerun makes no request and gives the same explanations.

The LLM-free proxy simulator (``explanation_tokens``) turns an explanation into the vocabulary tokens
that spell one of its words: the scores then read it as they read a token-statistics explanation.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlparse

from interp.errors import InterpError
from interp.paths import interp_home
from interp.storage.cache import atomic_write

SYSTEM = ("You study neurons of a language model. You are shown text where one neuron fires; the tokens where "
          "it fires most are marked <<like this>>. Answer with one short phrase (at most 8 words) saying what "
          "the neuron responds to. Do not explain your reasoning.")
MAX_TOKENS = 24
TIMEOUT_S = 60
STOPWORDS = frozenset("the a an of and or to in on at for with by from is are be this that it its as tokens token "
                      "word words text neuron fires responds related about like such".split())


def check_llm(url: str) -> str:
    """``url`` if it is ``local`` or an http(s) URL with a host; one clear line otherwise."""
    if url == "local":
        return url
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InterpError(f"--llm {url!r} is not an endpoint: give an OpenAI-compatible base URL such as "
                          "http://127.0.0.1:8000/v1 (vLLM, llama.cpp's server, ollama), or 'local' for the embedded "
                          "SmolLM2-135M-Instruct")
    return url


def messages(contexts: list[str], tokens: list[str]) -> list[dict]:
    """The chat request for one neuron: its marked contexts and its frequent activating tokens."""
    shown = "\n".join(f"{i + 1}. {c}" for i, c in enumerate(contexts))
    user = (f"Text where the neuron fires:\n{shown}\n\nTokens where it fires most: "
            f"{', '.join(repr(t) for t in tokens)}\n\nWhat does the neuron respond to?")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def _cached(explainer: str, request: dict, ask: Callable[[], str]) -> tuple[str, bool]:
    """(answer, whether it came from the cache): the answer is stored once, atomically."""
    key = hashlib.sha256(json.dumps({"explainer": explainer, **request}, sort_keys=True).encode()).hexdigest()
    path = interp_home() / "llm" / key[:2] / f"{key}.json"
    if path.exists():
        try:
            return json.loads(path.read_text())["answer"], True
        except (ValueError, KeyError, OSError):
            pass  # a damaged entry is asked again and replaced
    answer = ask()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps({"explainer": explainer, "request": request, "answer": answer}))
    return answer, False


def _completions_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


def endpoint(url: str, model_name: str = "") -> Callable[[list[dict]], tuple[str, bool]]:
    """An explainer calling an OpenAI-compatible chat endpoint (temperature 0), cached."""
    target = _completions_url(check_llm(url))

    def explain(msgs: list[dict]) -> tuple[str, bool]:
        request = {"model": model_name or "default", "messages": msgs, "temperature": 0, "max_tokens": MAX_TOKENS}

        def ask() -> str:
            body = json.dumps(request).encode()
            req = urllib.request.Request(target, body, {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=TIMEOUT_S) as response:  # noqa: S310 - the user's endpoint
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                raise InterpError(f"the LLM endpoint {target} answered HTTP {exc.code} ({exc.reason}): check "
                                  "--llm and --llm-model") from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise InterpError(f"the LLM endpoint {target} is not reachable ({reason}): start the server "
                                  "(vLLM, llama.cpp's server, ollama) or fix --llm") from None
            try:
                text = json.loads(raw)["choices"][0]["message"]["content"]
                if not isinstance(text, str):
                    raise TypeError
            except (ValueError, KeyError, IndexError, TypeError):
                raise InterpError(f"the LLM endpoint {target} answered something that is not an OpenAI chat "
                                  f"completion ({raw[:80]!r}): point --llm at the /v1 of an OpenAI-compatible "
                                  "server") from None
            return text

        return _cached(f"endpoint:{target}", request, ask)

    return explain


def local(model) -> Callable[[list[dict]], tuple[str, bool]]:
    """An explainer running ``model`` (an instruct model: the embedded SmolLM2-135M-Instruct) in process,
    greedy, with its chat template (ChatML where the tokenizer carries none), cached by weights hash."""
    from interp.models.generation import generate

    def render(msgs: list[dict]) -> str:
        template = getattr(model.tokenizer, "chat_template", None)
        if template:
            return model.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in msgs) + "<|im_start|>assistant\n"

    def explain(msgs: list[dict]) -> tuple[str, bool]:
        request = {"messages": msgs, "temperature": 0, "max_tokens": MAX_TOKENS}

        def ask() -> str:
            import torch

            ids = torch.tensor([model.encode(render(msgs), prepend_bos=False)], device=model.device)
            new = generate(model, ids, MAX_TOKENS)[0].tolist()
            return model.tokenizer.decode(new, skip_special_tokens=True)

        return _cached(f"local:{model.weights_hash}", request, ask)

    return explain


def clean(answer: str) -> str:
    """The first line of an answer, without quotes, list marks or a trailing full stop."""
    line = next((x for x in answer.strip().splitlines() if x.strip()), "")
    return re.sub(r"^[\s\-*\d.:\"']+|[\s.\"']+$", "", line)[:200]


def words(text: str) -> set[str]:
    """The content words of an explanation, lowercased."""
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS}


def explanation_tokens(text: str, vocab_words: dict[str, list[int]]) -> list[int]:
    """The vocabulary tokens that spell one of the explanation's words (case and a leading space aside):
    the proxy simulator predicts the neuron fires on them."""
    return sorted({t for w in words(text) for t in vocab_words.get(w, [])})


def vocab_words(vocab: list[str]) -> dict[str, list[int]]:
    """Each lowercased word to the token ids that spell it."""
    out: dict[str, list[int]] = {}
    for i, s in enumerate(vocab):
        w = s.strip().lower()
        if w.isalnum():
            out.setdefault(w, []).append(i)
    return out
