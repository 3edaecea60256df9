"""Does an audio LM keep its text abilities after an audio adaptation?

Why: alignment and task adapters change the language model's layers; a model that answers
speech well but has forgotten plain language is a worse model. Two cheap checks run on the text
alone (no audio): perplexity on a few sentences of plain English prose unlike any synthesized
transcript, and the greedy answer to a factual chat question ("Paris" expected).
"""

from __future__ import annotations

from typing import Any

import torch

HELD_OUT_TEXT = [
    "The committee met on Tuesday to review the budget for the coming year.",
    "Rain is expected along the coast tonight, with clearer skies by the morning.",
    "She opened the window and listened to the birds in the garden.",
    "Most bridges are inspected every two years for cracks and corrosion.",
    "The recipe calls for two cups of flour, a pinch of salt and some butter.",
    "He missed the last train and had to walk home through the quiet streets.",
    "Solar panels convert sunlight into electricity without moving parts.",
    "The museum will stay open late on Fridays during the summer.",
]
"""Plain English prose, unlike the synthesized transcripts: does the LM keep its text?"""


@torch.no_grad()
def text_retention(model: torch.nn.Module, tokenizer: Any) -> dict[str, Any]:
    """Perplexity on `HELD_OUT_TEXT` and the greedy answer to a factual chat question."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    nll, count = 0.0, 0
    for text in HELD_OUT_TEXT:
        ids = tokenizer(text, return_tensors="pt").input_ids
        loss = lm(input_ids=ids, labels=ids).loss
        nll += float(loss) * (ids.shape[1] - 1)
        count += ids.shape[1] - 1
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt")
    ids = prompt["input_ids"] if hasattr(prompt, "keys") else prompt
    out = lm.generate(input_ids=ids, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
    return {"text_perplexity": float(torch.exp(torch.tensor(nll / count))), "capital": answer}


def text_ability_metrics(model: torch.nn.Module, tokenizer: Any) -> dict[str, float]:
    """`text_retention` as numbers: `text_perplexity` and `capital_ok` (1 when the answer
    names Paris)."""
    result = text_retention(model, tokenizer)
    return {
        "text_perplexity": result["text_perplexity"],
        "capital_ok": float("paris" in result["capital"].lower()),
    }
