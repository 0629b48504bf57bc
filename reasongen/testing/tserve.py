"""A real OpenAI-compatible server the project did not write: ``transformers serve`` with tiny models, on loopback.

For the self-hosted tests and bench (issue 16). Three models, all tiny random Phis made on the spot:

- ``parrot``: has a chat template and always answers with one fixed reply, a JSON draft inside prose
  ("Sure, here it is: {...} Hope this helps."). Its attention and MLP outputs are zeroed, so the next
  token depends on the current one only, and the whole reply is one added token: any token -> reply
  -> end of text. A real dataset can be generated end to end, and the reply needs a lenient parse.
- ``random``: has a chat template, random weights: it never stops before ``max_tokens`` (compute load
  for the bench; every reply is garbage, truncated).
- ``plain``: no chat template: every chat request is an HTTP 500, forever (the breaker's case).

Needs the ``transformers[serving]`` extra (fastapi, uvicorn), installed with the test extra.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CHAT_TEMPLATE = ("{% for m in messages %}### {{ m['role'] }}:\n{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}### assistant:\n{% endif %}")
PARROT_DRAFT = {"transformed_input": "What is an orthogonal array?",
                "reasoning": "An orthogonal array is a table used in the design of experiments.",
                "response": "A table for planning experiments with few runs."}
PARROT_REPLY = "Sure, here it is: " + json.dumps(PARROT_DRAFT) + " Hope this helps."


def make_models(folder: Path) -> dict[str, Path]:
    """Write the three models under ``folder`` (skipped when already there); returns name -> folder."""
    from training.tiny import make_tiny_model

    models = {name: folder / name for name in ("parrot", "random", "plain")}
    for name, path in models.items():
        if not (path / "config.json").is_file():
            make_tiny_model(path)
            if name != "plain":
                _add_chat_template(path)
            if name == "parrot":
                _make_parrot(path)
    return models


def _add_chat_template(path: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(path)


def _make_parrot(path: Path) -> None:
    import torch
    from tokenizers import AddedToken
    from transformers import AutoTokenizer, PhiForCausalLM

    tok = AutoTokenizer.from_pretrained(path)
    tok.add_tokens([AddedToken(PARROT_REPLY, normalized=False, special=False)])
    tok.save_pretrained(path)
    model = PhiForCausalLM.from_pretrained(path)
    model.resize_token_embeddings(len(tok), mean_resizing=False)
    reply, eos = tok.convert_tokens_to_ids(PARROT_REPLY), tok.eos_token_id
    with torch.no_grad():
        for layer in model.model.layers:  # no attention, no MLP: hidden state = embedding of the last token
            for linear in (layer.self_attn.dense, layer.mlp.fc2):
                linear.weight.zero_()
                linear.bias.zero_()
        u = torch.tensor([1.0 if i % 2 else -1.0 for i in range(model.config.hidden_size)])
        model.model.embed_tokens.weight[:] = -u  # every token reads as "not the reply yet"...
        model.model.embed_tokens.weight[reply] = u  # ...except the reply itself
        model.model.final_layernorm.weight.fill_(1.0)
        model.model.final_layernorm.bias.zero_()
        model.lm_head.weight.zero_()
        model.lm_head.bias.zero_()
        model.lm_head.weight[reply] = -10 * u  # anything -> the reply
        model.lm_head.weight[eos] = 10 * u  # the reply -> end of text
    model.save_pretrained(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command() -> list[str]:
    exe = shutil.which("transformers", path=str(Path(sys.executable).parent)) or shutil.which("transformers")
    if exe is None:
        raise RuntimeError("the `transformers` command is missing: pip install 'transformers[serving]'")
    return [exe, "serve"]


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start(log: Path, *, port: int | None = None, extra: list[str] | None = None, wait_s: float = 180) -> Server:
    """Start ``transformers serve`` on loopback and wait until /health answers."""
    port = port or free_port()
    # One torch thread: a tiny model gains nothing from more, and on a shared machine they only contend.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1"}
    out = log.open("wb")
    process = subprocess.Popen([*serve_command(), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
                                "--log-level", "info", *(extra or [])], stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(f"http://127.0.0.1:{port}/v1", process, log)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"transformers serve exited ({process.returncode}):\n{server.log_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
                if reply.status == 200:
                    return server
        except OSError:
            time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"transformers serve did not answer /health within {wait_s:.0f}s:\n{server.log_text()[-3000:]}")
