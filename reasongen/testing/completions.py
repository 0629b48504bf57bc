"""What the loopback server answers: a chat completion whose content comes from a builder in ``CONTENT``.

To add a reply shape (say, a judge's verdict), add ``CONTENT["judge"] = verdict_for`` (a function of the
request body returning the content string) and start the server with ``reply="judge"``; faults (truncation,
malformed JSON, refusals, the ``max_tokens`` budget) apply to every shape alike.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from generation.tokens import ESTIMATE, count_messages, reference_counter
from judging.stub import is_judge_request, verdict_for

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_OPENING = re.compile(r'open with this sentence, verbatim: "([^"]+)"')


def last_user(body: dict[str, Any]) -> str:
    users = [m.get("content") or "" for m in body.get("messages", []) if m.get("role") == "user"]
    text = users[0] if users else ""
    return text if isinstance(text, str) else json.dumps(text)


class _CachedCount:
    """The reference count, remembered per text: the system prompt and a rerun's prompts repeat, and the BPE
    costs ~0.3 ms a request, which would make the server, not the client, the bottleneck of a bench."""

    name = "reference (cached)"

    @staticmethod
    @lru_cache(maxsize=65536)
    def count(text: str) -> int:
        # A real tokenizer (Qwen2.5's BPE) when the test extra is installed, so usage is what a server would say.
        return (reference_counter() or ESTIMATE).count(text)


COUNTER = _CachedCount()


def tokens(text: str) -> int:
    return max(1, COUNTER.count(text))


def draft_for(body: dict[str, Any]) -> dict[str, str]:
    """A plausible English draft from the prompt: the server cannot translate, so it describes and echoes.

    It keeps the reference's numbers and, when the system prompt names a sentence to open the reasoning
    with (the default template does for ja/zh), opens with it.
    """
    text = last_user(body)
    reference = text.split("Reference answer:", 1)[1].strip() if "Reference answer:" in text else text
    source = text.split("Reference answer:", 1)[0]
    if "Input" in source:
        source = source.split("Input", 1)[1].partition("\n")[2]
    numbers = " ".join(re.findall(r"\d+(?:\.\d+)?", reference))
    english = f"The answer, in English, follows the reference. {numbers}" if _CJK.search(reference) else reference
    opening = _OPENING.search(_system(body))
    steps = ("First, read the instruction and the input carefully. Next, identify what is asked and which facts "
             "in the input answer it. Finally, state the answer plainly in English.")
    return {
        "transformed_input": source.strip() if not _CJK.search(source) else "The input text, rendered in English.",
        "reasoning": f"{opening.group(1)} {steps}" if opening else steps,
        "response": english.strip() or "No answer.",
    }


def _system(body: dict[str, Any]) -> str:
    return " ".join(str(m.get("content") or "") for m in body.get("messages", []) if m.get("role") == "system")


# reply name -> content of a well-formed answer to this request body.
CONTENT: dict[str, Callable[[dict[str, Any]], str]] = {
    "draft": lambda body: json.dumps(draft_for(body), ensure_ascii=False),
    "judge": verdict_for,  # judging/stub.py
    # A server that accepts response_format and ignores it: the JSON comes wrapped in prose.
    "prose": lambda body: f"Sure, here it is: {json.dumps(draft_for(body), ensure_ascii=False)} Hope this helps.",
}


def completion(body: dict[str, Any], fault: str, request_no: int, reply: str = "draft") -> dict[str, Any]:
    # A judge's request always gets a verdict (generate --judge sends both kinds to one server).
    content: str | None = CONTENT["judge" if is_judge_request(body) else reply](body)
    assert content is not None
    finish, message = "stop", {"role": "assistant"}
    if fault == "malformed":
        content = content[: len(content) // 2] + ' <<not json'
    if fault == "length":
        content, finish = content[: max(8, len(content) // 3)], "length"
    budget = body.get("max_completion_tokens") or body.get("max_tokens")
    if budget and tokens(content) > budget:
        content, finish = content[: budget * 4], "length"
    if fault == "refusal":
        content, message["refusal"] = None, "I'm sorry, but I can't help with that."
    usage = {"prompt_tokens": count_messages(body.get("messages", []), COUNTER),
             "completion_tokens": tokens(content or "x")}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {
        "id": f"chatcmpl-stub-{request_no}", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model", "stub"), "usage": usage,
        "choices": [{"index": 0, "finish_reason": finish, "message": {**message, "content": content}}],
    }
