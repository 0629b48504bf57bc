"""Local backend throughput, each figure next to its yardstick.

CPU (always): a tiny random Phi (hidden 64, 2 layers) loaded through the backend's from_pretrained
path; generated tokens/s through LocalBackend at batch 1, 8 and 32, over a bare `model.generate` on the
same token batches (the backend's own overhead: tokenising, sorting, decoding, parsing).

GPU (when CUDA is available): the Phi-2 architecture (hidden 2560, 32 layers, vocab 51200) with random
weights in bf16 -- the same arithmetic as the real model -- decoding at batch 1..64; tokens/s over the
memory-bandwidth bound (each decode step reads every weight once plus the KV cache so far).

    python bench/local_bench.py                       # CPU part, and the GPU part when there is a GPU
    python bench/local_bench.py --part gpu --bandwidth 4.8e12   # H200; eager and compiled, batch 1/8/32/64
    python bench/local_bench.py --part gpu --device cpu --tiny --gpu-batches 1,2 --gpu-new-tokens 8  # smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from generation.backends.local import LocalBackend, load_model  # noqa: E402
from generation.records import TrainingView  # noqa: E402
from generation.templates import load_template  # noqa: E402
from training.tiny import make_tiny_model  # noqa: E402

PHI2 = dict(hidden_size=2560, intermediate_size=10240, num_hidden_layers=32, num_attention_heads=32,
            num_key_value_heads=32, vocab_size=51200, partial_rotary_factor=0.4, max_position_embeddings=2048)


def cpu_part(batches: list[int], new_tokens: int, repeats: int) -> list[dict]:
    folder = make_tiny_model(Path(tempfile.mkdtemp(prefix="tiny-phi-")), hidden=64)
    template = load_template("concise")
    rows = []
    for batch in batches:
        views = [TrainingView(i, f"k{i}", "en", f"Question {i}: add {i} and 1.", "", f"{i + 1}")
                 for i in range(batch)]
        prompts = [template.render(v) for v in views]
        backend = LocalBackend(str(folder), batch_size=batch, max_new_tokens=new_tokens, device="cpu")
        backend.generate(prompts)  # warm-up (and the one-time load)
        ours, bare = [], []
        for _ in range(repeats):  # interleaved: drift in machine load hits both alike
            start = time.perf_counter()
            drafts = backend.generate(prompts)
            ours.append(sum(d.completion_tokens for d in drafts) / (time.perf_counter() - start))
            bare.append(bare_generate(backend, [backend.flatten(p) for p in prompts], new_tokens))
        o, b = statistics.median(ours), statistics.median(bare)
        rows.append({"part": "cpu", "model": "tiny-phi (hidden 64, 2 layers)", "batch": batch,
                     "backend_tokens_per_s": round(o, 1), "bare_generate_tokens_per_s": round(b, 1),
                     "ratio": round(o / b, 3)})
    return rows


def bare_generate(backend: LocalBackend, texts: list[str], new_tokens: int) -> float:
    model, tokenizer = load_model(backend.model, backend.device, backend.dtype)
    inputs = tokenizer(texts, return_tensors="pt", padding=True)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    elapsed = time.perf_counter() - start
    generated = out[:, inputs["input_ids"].shape[1] :]
    eos = tokenizer.eos_token_id
    counted = sum(row.tolist().index(eos) if eos in row.tolist() else len(row) for row in generated)
    return counted / elapsed


TINY = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            vocab_size=1000, partial_rotary_factor=0.4, max_position_embeddings=1024)


def gpu_part(batches: list[int], prompt_len: int, new_tokens: int, bandwidth: float,
             device: str = "cuda", arch: dict | None = None, modes: tuple[str, ...] = ("eager",)) -> list[dict]:
    """Greedy generation at each batch size, eager (dynamic KV cache) and/or compiled (transformers' static KV
    cache + torch.compile, its documented recipe), against the memory-bandwidth bound."""
    from transformers import PhiConfig, PhiForCausalLM

    arch = arch or PHI2
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # build in bf16 directly: no float32 copy of 2.8B weights
    with torch.device(device):
        model = PhiForCausalLM(PhiConfig(**arch)).eval()
    torch.set_default_dtype(torch.float32)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    eager_forward, rows = model.forward, []
    for mode in modes:
        if mode == "compiled":
            model.generation_config.cache_implementation = "static"
            model.forward = torch.compile(eager_forward, mode="reduce-overhead", fullgraph=True)
        for batch in batches:
            ids = torch.randint(1, arch["vocab_size"], (batch, prompt_len), device=device)
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            full = timed_generate(model, ids, new_tokens)
            rate = batch * new_tokens / full  # prompt processing included: 256 + 256 tokens, it is a small share
            bound = decode_bound(batch, prompt_len, new_tokens, weight_bytes, bandwidth, arch)
            peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
            rows.append({"part": "gpu", "model": "phi-2 architecture, random bf16" if arch is PHI2 else "tiny phi",
                         "device": torch.cuda.get_device_name() if device == "cuda" else device, "mode": mode,
                         "batch": batch, "prompt_tokens": prompt_len, "new_tokens": new_tokens,
                         "tokens_per_s": round(rate, 1), "bandwidth_bound_tokens_per_s": round(bound, 1),
                         "ratio_to_bound": round(rate / bound, 3), "peak_gib": peak and round(peak, 2)})
            print(json.dumps(rows[-1]), flush=True)
    model.forward = eager_forward
    return rows


def timed_generate(model, ids, new_tokens: int) -> float:  # type: ignore[no-untyped-def]
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0,
                  attention_mask=torch.ones_like(ids))
    sync = torch.cuda.synchronize if ids.is_cuda else (lambda: None)
    with torch.inference_mode():
        model.generate(ids, **kwargs)  # warm-up (and, compiled, the compilation for this shape)
        sync()
        start = time.perf_counter()
        model.generate(ids, **kwargs)
        sync()
    return time.perf_counter() - start


def decode_bound(batch: int, prompt_len: int, new_tokens: int, weight_bytes: int, bandwidth: float,
                 arch: dict) -> float:
    """Tokens/s if every decode step only had to stream the weights and the KV cache from memory once."""
    kv_per_token = 2 * arch["num_hidden_layers"] * arch["hidden_size"] * 2  # K and V, bf16
    mean_context = prompt_len + new_tokens / 2
    step_bytes = weight_bytes + batch * mean_context * kv_per_token
    return batch * bandwidth / step_bytes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["cpu", "gpu", "all"], default="all")
    p.add_argument("--cpu-batches", default="1,8,32")
    p.add_argument("--gpu-batches", default="1,8,32,64")
    p.add_argument("--new-tokens", type=int, default=32, help="CPU part")
    p.add_argument("--gpu-prompt", type=int, default=256)
    p.add_argument("--gpu-new-tokens", type=int, default=256)
    p.add_argument("--bandwidth", type=float, default=3.35e12, help="bytes/s (H100 SXM 3.35e12, H200 4.8e12)")
    p.add_argument("--repeats", type=int, default=3, help="CPU part: interleaved repeats, median reported")
    p.add_argument("--modes", default="eager,compiled",
                   help="GPU part: eager (dynamic KV cache) and/or compiled (static KV cache + torch.compile)")
    p.add_argument("--device", default="cuda", help="GPU part on another device (cpu: a smoke test, with --tiny)")
    p.add_argument("--tiny", action="store_true", help="GPU part with a tiny Phi (smoke test of the script)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.part in ("cpu", "all"):
        for row in cpu_part([int(b) for b in args.cpu_batches.split(",")], args.new_tokens, args.repeats):
            print(json.dumps(row), flush=True)
    if args.part in ("gpu", "all"):
        if args.device == "cuda" and not torch.cuda.is_available():
            print(json.dumps({"part": "gpu", "skipped": "CUDA is not available"}))
            return
        gpu_part([int(b) for b in args.gpu_batches.split(",")], args.gpu_prompt, args.gpu_new_tokens, args.bandwidth,
                 device=args.device, arch=TINY if args.tiny else PHI2, modes=tuple(args.modes.split(",")))


if __name__ == "__main__":
    main()
