"""Training throughput: TRL SFTTrainer + PEFT LoRA (what `reasongen train` runs) vs a bare PyTorch loop.

    python bench/train_bench.py                 # CPU: the tiny random Phi model
    python bench/train_bench.py --phi2          # GPU: Phi-2 architecture, random weights, bf16, peak memory
        [--seq-len 1024] [--batch-size 4] [--steps 20] [--peak-flops 989e12]
    python bench/train_bench.py --phi2 --layers 1 --seq-len 64 --steps 2 --batch-size 1   # CPU smoke of --phi2

Data: pre-tokenized random sequences of exactly --seq-len tokens (no padding, so tokens/s counts real
tokens); the first quarter of each is the prompt and is masked from the loss. The trainer is built by
`training.sft.trainer_for` with the run defaults (LoRA r=16 alpha=32 on q_proj,k_proj,v_proj,dense,fc1,fc2;
bf16 + gradient checkpointing on GPU, float32 on CPU). The competitor is a plain loop (forward, backward,
AdamW step) over the same LoRA model and batches, with the same checkpointing setting.

Model FLOPs per token, frozen base with LoRA (matmul weights N, LoRA weights N_lora, L layers, d hidden,
S sequence): forward 2N; backward needs activation gradients (2N) but no weight gradients for the frozen
base, so 4N + 6 N_lora; attention scores and values add 12 L S d (forward + backward). Recomputation by
gradient checkpointing is not counted (model FLOPs, not hardware FLOPs). MFU = tokens/s x that / peak;
the usual 6N (full fine-tuning) figure is printed as well. N excludes the input embedding (a lookup).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from training.callbacks import ThroughputCallback  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.sft import load_tokenizer, trainer_for  # noqa: E402
from training.tiny import make_tiny_model  # noqa: E402

PHI2 = dict(vocab_size=51200, hidden_size=2560, intermediate_size=10240, num_hidden_layers=32, num_attention_heads=32,
            max_position_embeddings=2048, partial_rotary_factor=0.4)


def dataset(n: int, seq_len: int, vocab: int, seed: int = 0):  # type: ignore[no-untyped-def]
    from datasets import Dataset

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (n, seq_len), generator=g).tolist()
    prompt = seq_len // 4
    return Dataset.from_dict({"input_ids": ids, "completion_mask": [[0] * prompt + [1] * (seq_len - prompt)] * n})


def make_model(args, tiny_dir: Path, gpu: bool):  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM, PhiConfig, PhiForCausalLM

    if not args.phi2:
        return AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    torch.manual_seed(0)
    with torch.device("cuda" if gpu else "cpu"):
        config = PhiConfig(**{**PHI2, "num_hidden_layers": args.layers or PHI2["num_hidden_layers"]})
        return PhiForCausalLM(config).to(torch.bfloat16 if gpu else torch.float32)


def flops_per_token(model, seq_len: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(LoRA model FLOPs per token as in the module doc, the 6N figure)."""
    cfg = model.config
    embed = model.get_input_embeddings().weight.numel()
    total = sum(p.numel() for p in model.parameters())
    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    n = total - embed - lora
    attention = 12 * cfg.num_hidden_layers * seq_len * cfg.hidden_size
    return 4 * n + 6 * lora + attention, 6 * n + attention


def run_trainer(args, cfg, model, tok, data, gpu) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    throughput = ThroughputCallback()
    with tempfile.TemporaryDirectory() as out:
        trainer = trainer_for(cfg, model, tok, data, None, Path(out), [throughput], gpu)
        trainer.train()
    return throughput.tokens_per_s or 0.0, trainer.model


def bare_loop(args, peft_model, data, gpu) -> float:  # type: ignore[no-untyped-def]
    device = next(peft_model.parameters()).device
    ids = torch.tensor(data["input_ids"], device=device)
    labels = ids.clone()
    labels[:, : args.seq_len // 4] = -100
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=2e-4)
    peft_model.train()
    start, tokens = None, 0
    for step in range(args.steps + 2):
        if step == 2:  # two warm-up steps, as the trainer's first steps also pay for allocation
            _sync(gpu)
            start = time.perf_counter()
        batch = slice((step * args.batch_size) % len(ids), (step * args.batch_size) % len(ids) + args.batch_size)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=gpu):
            loss = peft_model(input_ids=ids[batch], labels=labels[batch]).loss
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        tokens += ids[batch].numel() if step >= 2 else 0
    _sync(gpu)
    return tokens / (time.perf_counter() - start)


def _sync(gpu: bool) -> None:
    if gpu:
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--phi2", action="store_true", help="Phi-2 architecture at random weights (needs a GPU to be useful)")
    p.add_argument("--seq-len", type=int, default=None, help="default 1024 with --phi2, else 256")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--layers", type=int, default=None, help="fewer Phi-2 layers (a CPU smoke test of --phi2)")
    p.add_argument("--peak-flops", type=float, default=989e12, help="peak bf16 dense FLOP/s (H100 SXM: 989e12)")
    args = p.parse_args()
    args.seq_len = args.seq_len or (1024 if args.phi2 else 256)
    gpu = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as tmp:
        tiny = make_tiny_model(Path(tmp) / "tiny")
        tok = load_tokenizer(str(tiny))
        vocab = PHI2["vocab_size"] if args.phi2 else len(tok)
        data = dataset(args.steps * args.batch_size, args.seq_len, vocab)
        cfg = TrainConfig(base_model=str(tiny), max_steps=args.steps, batch_size=args.batch_size, logging_steps=10_000,
                          save_steps=10_000, max_length=args.seq_len, device="cuda" if gpu else "cpu")
        trl_rate, peft_model = run_trainer(args, cfg, make_model(args, tiny, gpu), tok, data, gpu)
        bare_rate = bare_loop(args, peft_model, data, gpu)
        report(args, peft_model, trl_rate, bare_rate, gpu)


def report(args, model, trl_rate: float, bare_rate: float, gpu: bool) -> None:  # type: ignore[no-untyped-def]
    lora_flops, full_flops = flops_per_token(model, args.seq_len)
    device = torch.cuda.get_device_name() if gpu else f"CPU ({torch.get_num_threads()} threads)"
    params = sum(p.numel() for p in model.parameters())
    name = f"Phi-2 architecture{f' cut to {args.layers} layers' if args.layers else ''}" if args.phi2 else "tiny Phi"
    print(f"{name} ({params / 1e6:,.2f} M params incl. LoRA) on {device}, "
          f"{'bf16 + gradient checkpointing' if gpu else 'float32'}, seq {args.seq_len}, batch {args.batch_size}, "
          f"{args.steps} steps")
    print(f"reasongen (TRL SFTTrainer + PEFT LoRA): {trl_rate:,.0f} tokens/s")
    print(f"competitor (bare PyTorch loop, same LoRA model): {bare_rate:,.0f} tokens/s   "
          f"ratio trainer/bare: {trl_rate / bare_rate:.2f}x")
    print(f"model FLOPs per token: {lora_flops / 1e9:.3f} G (4N + 6N_lora + 12LSd), {full_flops / 1e9:.3f} G (6N + 12LSd)")
    if gpu:
        print(f"peak GPU memory (trainer and bare loop, whichever was higher): "
              f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
        print(f"target (issue 13): >= 6,000 tokens/s on one H100/H200-class GPU at seq 1024: "
              f"{'met' if trl_rate >= 6000 else 'NOT met'} ({trl_rate:,.0f})")
        print(f"MFU (4N + 6N_lora + 12LSd = {lora_flops / 1e9:.2f} GFLOP/token, peak {args.peak_flops:.3g}): "
              f"{trl_rate * lora_flops / args.peak_flops:.1%}; with the 6N figure "
              f"({full_flops / 1e9:.2f} GFLOP/token): {trl_rate * full_flops / args.peak_flops:.1%}")


if __name__ == "__main__":
    main()
