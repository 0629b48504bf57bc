"""The local backend on a tiny random Phi loaded through from_pretrained (its real path)."""

import subprocess
import sys

import pytest
import torch

from generation.backends import create_backend
from generation.backends.local import LocalBackend
from generation.records import DraftResult, TrainingView
from generation.templates import load_template
from reasongen.settings import Settings
from training.tiny import make_tiny_model


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return str(make_tiny_model(tmp_path_factory.mktemp("tiny-phi"), hidden=64))


def _prompts(n):
    template = load_template("concise")
    words = "ZEBRAQUOKKA " + "more context " * 3
    return [template.render(TrainingView(i, f"k{i}", "en", f"Question {i}?", words * (i % 3), "Five."))
            for i in range(n)]


def test_greedy_batched_output_equals_one_at_a_time(tiny_path):
    prompts = _prompts(5)
    batched = LocalBackend(tiny_path, batch_size=4, max_new_tokens=12, device="cpu").generate(prompts)
    single = LocalBackend(tiny_path, batch_size=1, max_new_tokens=12, device="cpu").generate(prompts)
    assert [d.raw_text for d in batched] == [d.raw_text for d in single]
    assert all(d.raw_text and d.finish_reason in ("stop", "length") for d in batched)
    assert all(d.completion_tokens <= 12 and d.prompt_tokens > 20 for d in batched)


def test_the_prompt_never_leaks_into_the_draft(tiny_path):
    backend = LocalBackend(tiny_path, batch_size=2, max_new_tokens=8, device="cpu")
    for draft, prompt in zip(backend.generate(_prompts(3)), _prompts(3)):
        assert "ZEBRAQUOKKA" not in (draft.raw_text or "") and "Instruct:" not in (draft.raw_text or "")
        assert draft.failed or draft.transformed_input is not None  # random weights rarely yield the fields


def test_the_model_is_loaded_once_per_process(tiny_path, monkeypatch):
    import generation.backends.local as local

    LocalBackend(tiny_path, max_new_tokens=2, device="cpu").generate(_prompts(1))
    monkeypatch.setattr(local.AutoModelForCausalLM, "from_pretrained", None)  # a second load would crash
    LocalBackend(tiny_path, max_new_tokens=2, device="cpu").generate(_prompts(1))


def test_out_of_memory_halves_the_batch_and_keeps_the_order(monkeypatch):
    backend = LocalBackend("unused", batch_size=8, device="cpu")
    monkeypatch.setattr(backend, "flatten", lambda p: p.user)
    seen = []

    def run_batch(texts):
        seen.append(len(texts))
        if len(texts) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return [DraftResult(raw_text=t) for t in texts]

    monkeypatch.setattr(backend, "_run_batch", run_batch)
    prompts = _prompts(5)
    drafts = backend.generate(prompts)
    assert [d.raw_text for d in drafts] == [p.user for p in prompts]
    assert backend.batch_size == 2 and seen[:3] == [5, 4, 2]


def test_out_of_memory_at_batch_one_fails_those_drafts(monkeypatch):
    backend = LocalBackend("unused", batch_size=1, device="cpu")
    monkeypatch.setattr(backend, "flatten", lambda p: p.user)
    monkeypatch.setattr(backend, "_run_batch", lambda texts: (_ for _ in ()).throw(torch.OutOfMemoryError("x")))
    [draft] = backend.generate(_prompts(1))
    assert draft.failed and "out of memory" in draft.error


def test_registry_builds_it_from_settings_and_cache_params_name_the_decoding():
    backend = create_backend("local", Settings(local_batch_size=3, database_url="sqlite://"), model="m")
    assert (backend.model, backend.batch_size) == ("m", 3)
    assert backend.cache_params() == {"max_new_tokens": 512, "greedy": True}
    sampled = LocalBackend("m", temperature=0.7, seed=3)
    assert sampled.cache_params()["seed"] == 3


def test_a_teacher_only_process_never_imports_torch():
    code = ("import sys; from generation.backends import create_backend; from generation.run import generate_drafts;"
            "from reasongen.settings import Settings;"
            "create_backend('teacher', Settings(database_url='sqlite://')).close();"
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
