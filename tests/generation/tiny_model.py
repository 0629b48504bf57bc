"""A tiny randomly initialised Phi model and a tokenizer trained here on a few sentences (no downloads)."""

from __future__ import annotations

from pathlib import Path

SENTENCES = [
    "Instruct: You write training data for a small English-first language model.",
    "Return one JSON object with the fields transformed_input, reasoning and response.",
    "Please translate the following Japanese input texts into English and respond according to the instructions.",
    "Reasoning: first read the question, then add the numbers. Response: the sum is five. Output:",
    "日本語の入力を英語に翻訳してください。答えは5です。",
]


def build_tiny_phi(folder: Path, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PhiConfig, PhiForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(SENTENCES * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    torch.manual_seed(seed)
    config = PhiConfig(vocab_size=len(fast), hidden_size=hidden, intermediate_size=hidden * 2,
                       num_hidden_layers=layers, num_attention_heads=4, max_position_embeddings=4096,
                       eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, bos_token_id=fast.eos_token_id)
    PhiForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder
