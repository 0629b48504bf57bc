"""A tiny randomly initialised Phi model and a tokenizer trained on the spot.

For the offline demo, the tests and the CPU benches: the real `from_pretrained` path with no download.
Same architecture class as microsoft/phi-2, a few thousand parameters.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

DEFAULT_TEXTS = [
    "### Instruction:\n### Input:\n### Reasoning:\n### Transformed input:\n### Response:\n",
    "Please translate the following Japanese input texts into English and respond according to the instructions.",
    "Please translate the following Chinese input texts into English and respond according to the instructions.",
    "Read the following Japanese text, which holds an instruction and its context. Answer it in English.",
    "An orthogonal array lets you study many factors with few runs. The signal-to-noise ratio rewards robustness.",
    "Supervised fine-tuning continues training a pretrained model on prompts paired with desired responses.",
    "直交表とは何ですか？実験計画法で使われる表です。品質工学とロバスト設計。",
    "什么是监督微调？它在预训练模型上继续训练。信噪比和质量工程。",
]


def train_tokenizer(folder: Path, texts: Iterable[str] = DEFAULT_TEXTS, vocab_size: int = 400) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Byte-level so any Japanese or Chinese text encodes, even characters never seen in training.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(texts) * 4, trainer)
    # transformers 5 leaves this constructor unannotated.
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<pad>")
    fast.save_pretrained(folder)


def save_random_phi(folder: Path, hidden: int = 32, layers: int = 2, heads: int = 4, seed: int = 0) -> None:
    import torch
    from transformers import AutoTokenizer, PhiConfig, PhiForCausalLM

    tok = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(seed)
    config = PhiConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=heads, max_position_embeddings=2048, initializer_range=0.2,
        eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    PhiForCausalLM(config).save_pretrained(folder)


def make_tiny_model(folder: str | Path, texts: Iterable[str] = DEFAULT_TEXTS, **model_options: int) -> Path:
    """Write a loadable tiny Phi model + tokenizer into ``folder`` and return it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train_tokenizer(folder, texts)
    save_random_phi(folder, **model_options)
    return folder
