import json
from pathlib import Path

import pytest
from sqlalchemy import update

from storage.models import Build, Draft
from tests.training.conftest import approve_all, make_rows
from training.build import BuildOptions, build_sft
from training.examples import DEFAULT_TEMPLATE
from training.formats import DEFAULT_FORMATS
from training.manifest import MANIFEST_NAME


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_database_state_gives_byte_identical_files(wired, tmp_path):
    approve_all(wired, "ds", make_rows(24))
    first = build_sft(wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "a")))
    second = build_sft(wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "b")))
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    for name in (MANIFEST_NAME, "README.md"):  # the manifest and the dataset card name the parent build
        a.pop(name), b.pop(name)
    assert a == b and len(a) >= 19
    assert first.manifest["files"] == second.manifest["files"]
    assert second.manifest["parent_build_id"] == first.build_id
    assert second.manifest["diff"] == {"added": [], "removed": [], "changed": []}


def test_manifest_counts_hashes_and_lineage(wired, tmp_path):
    approve_all(wired, "ds", make_rows(12))
    result = build_sft(wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "a"), eval_fraction=0.3, batch_id=None))
    m = json.loads((tmp_path / "a" / MANIFEST_NAME).read_text())
    assert m["counts"]["lang"] == {"en": 4, "ja": 4, "zh": 4}
    assert m["counts"]["train"] + m["counts"]["eval"] == 12
    assert m["sft_template"]["hash"] == DEFAULT_TEMPLATE.hash and len(m["draft_template_hashes"]) == 1
    assert sorted(k for rows in m["splits"].values() for k, _ in rows) == [f"rec-{i:05d}" for i in range(12)]
    import hashlib
    for name, digest in m["files"].items():
        assert hashlib.sha256((tmp_path / "a" / name).read_bytes()).hexdigest() == digest
    with wired.uow() as uow:
        row = uow.session.get(Build, result.build_id)
        assert (row.n_train, row.n_eval) == (m["counts"]["train"], m["counts"]["eval"])
        assert row.manifest_sha256 == hashlib.sha256((tmp_path / "a" / MANIFEST_NAME).read_bytes()).hexdigest()


def test_split_never_moves_existing_records_and_diff_names_changes(wired, tmp_path):
    approve_all(wired, "ds", make_rows(60))
    first = build_sft(wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "a"), eval_fraction=0.2))
    approve_all(wired, "ds", make_rows(60, start=60))
    with wired.uow() as uow:  # one existing draft is rejected, so its record leaves the set
        uow.session.execute(update(Draft).where(Draft.id == first.manifest["splits"]["train"][0][1])
                            .values(status="rejected"))
        uow.commit()
    second = build_sft(wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "b"), eval_fraction=0.2))
    side = lambda m: {k: s for s, rows in m["splits"].items() for k, _ in rows}  # noqa: E731
    before, after = side(first.manifest), side(second.manifest)
    assert all(after[k] == s for k, s in before.items() if k in after)
    assert 0 < second.manifest["counts"]["eval"] < second.manifest["counts"]["train"]
    removed = first.manifest["splits"]["train"][0][0]
    assert second.manifest["diff"]["removed"] == [removed]
    assert len(second.manifest["diff"]["added"]) == 60 and second.manifest["diff"]["changed"] == []


def test_seed_layout_duplicates_and_filters(sqlite_wired, tmp_path):
    rows = make_rows(3) + [{**make_rows(1)[0], "key": "dup"}]  # same content under another key
    approve_all(sqlite_wired, "ds", rows)
    result = build_sft(sqlite_wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "a"), eval_fraction=0.0))
    assert result.manifest["dropped"]["duplicates"]["count"] == 1
    lines = [json.loads(x) for x in (tmp_path / "a/prompt_completion/train.jsonl").read_text().splitlines()]
    ja = next(x for x in lines if "直交表" in x["prompt"])
    assert ja["prompt"].startswith("### Instruction:\nRead the following Japanese text")
    assert ja["completion"].startswith("Please translate the following Japanese input texts into English")
    assert "### Transformed input:" in ja["completion"] and ja["completion"].endswith("### Response:\nAnswer number 1.")
    en = build_sft(sqlite_wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "b"), where={"lang": "en"}))
    assert en.manifest["counts"]["lang"] == {"en": 1}


def test_examples_over_max_length_are_dropped_and_counted(sqlite_wired, tmp_path, tiny_model):
    rows = make_rows(6)
    rows[0]["output"] = "long " * 400
    approve_all(sqlite_wired, "ds", rows)
    result = build_sft(sqlite_wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "a"), max_length=300,
                                                       tokenizer=tiny_model, eval_fraction=0.0))
    assert result.manifest["dropped"]["too_long"]["count"] == 1
    assert result.manifest["counts"]["total"] == 5
    with pytest.raises(ValueError, match="--tokenizer"):
        build_sft(sqlite_wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "b"), max_length=300))


def test_every_format_loads_with_datasets(sqlite_wired, tmp_path):
    import datasets

    approve_all(sqlite_wired, "ds", make_rows(30))
    result = build_sft(sqlite_wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "a"), eval_fraction=0.3))
    root, n = tmp_path / "a", result.manifest["counts"]
    assert result.manifest["params"]["formats"] == list(DEFAULT_FORMATS)
    for folder, column in [("prompt_completion", "completion"), ("messages", "messages"), ("alpaca", "output"),
                           ("sharegpt", "conversations")]:
        for split in ("train", "eval"):
            ds = datasets.Dataset.from_json(str(root / folder / f"{split}.jsonl"), cache_dir=str(tmp_path / "c"))
            assert len(ds) == n[split] and column in ds.column_names
    parquet = datasets.Dataset.from_parquet(str(root / "parquet/train.parquet"), cache_dir=str(tmp_path / "c"))
    assert len(parquet) == n["train"] and "draft_id" in parquet.column_names
    on_disk = datasets.load_from_disk(str(root / "hf_dataset"))
    assert (len(on_disk["train"]), len(on_disk["eval"])) == (n["train"], n["eval"])
    info = json.loads((root / "dataset_info.json").read_text())
    assert all((root / entry["file_name"]).is_file() for entry in info.values())
    import yaml
    snippet = yaml.safe_load((root / "axolotl.yaml").read_text())
    assert [(root / d["path"]).is_file() for d in snippet["datasets"] + snippet["test_datasets"]] == [True, True]


def test_bad_input_gives_clear_errors(sqlite_wired, tmp_path):
    with pytest.raises(LookupError, match="No dataset named 'nope'"):
        build_sft(sqlite_wired.uow, BuildOptions("nope", out_dir=str(tmp_path / "a")))
    approve_all(sqlite_wired, "ds", make_rows(3))
    with pytest.raises(ValueError, match="Unknown format"):
        build_sft(sqlite_wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "a"), formats=["csv"]))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="already holds files"):
        build_sft(sqlite_wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "full")))
    with sqlite_wired.uow() as uow:
        assert uow.builds.list() == []


def test_custom_template_file(sqlite_wired, tmp_path):
    approve_all(sqlite_wired, "ds", make_rows(3))
    path = tmp_path / "short.toml"
    path.write_text('prompt = "Q: {instruction}\\n\\nContext: {input}\\n\\nA: "\ncompletion = "{response}"\n')
    result = build_sft(sqlite_wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "a"), template=str(path),
                                                       eval_fraction=0.0))
    rows = [json.loads(x) for x in (tmp_path / "a/prompt_completion/train.jsonl").read_text().splitlines()]
    assert rows[0] == {"prompt": "Q: What is supervised fine-tuning, case 0?\n\nA: ", "completion": "Answer number 0."}
    assert rows[1]["prompt"].startswith("Q: Read the following Japanese text") and "Context: 直交表" in rows[1]["prompt"]
    assert result.manifest["sft_template"]["name"] == "short"
    assert result.manifest["sft_template"]["hash"] != DEFAULT_TEMPLATE.hash
    path.write_text('prompt = "{question}"\ncompletion = "{response}"\n')
    with pytest.raises(ValueError, match=r"short.toml: unknown placeholder\(s\) \['question'\]"):
        build_sft(sqlite_wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "b"), template=str(path)))
    path.write_text('prompt = "x"\n')
    with pytest.raises(ValueError, match=r"short.toml: the SFT template needs string keys \['completion'\]"):
        build_sft(sqlite_wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "b"), template=str(path)))
