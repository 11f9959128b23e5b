# The targets a contributor (and CI) runs. `make test` is what .ci/run calls.
.PHONY: demo test lock lint typecheck unit bench-drain bench-refresh bench-csv bench-scale launcher-zip image fuzz clean

PY := .venv/bin/python

demo:
	scripts/bootstrap.sh
	$(PY) -m scripts.demo

test:
	scripts/bootstrap.sh test
	$(PY) -m ruff check worker launcher tests bench scripts
	$(PY) -m mypy
	$(PY) -m pytest -q --durations=25

lint:
	$(PY) -m ruff check worker launcher tests bench scripts

typecheck:
	$(PY) -m mypy

unit:
	$(PY) -m pytest -q -m "not slow and not nfs and not image"

bench-drain:
	$(PY) bench/drain.py

bench-refresh:
	$(PY) bench/refresh.py

bench-scale:
	$(PY) bench/scale.py

bench-csv:
	$(PY) bench/csv.py

# The C converter fuzzed under AddressSanitizer and UBSan (scripts/fuzz.py); FUZZ_SECONDS=600.
FUZZ_SECONDS ?= 300
fuzz:
	scripts/bootstrap.sh test
	$(PY) -m scripts.fuzz --seconds $(FUZZ_SECONDS)

# The launcher Lambda's code: launcher/*.py alone (the runtime provides boto3).
launcher-zip:
	$(PY) -m scripts.build_launcher_zip --output launcher.zip

# The worker image from the Dockerfile, with buildah (no Docker engine needed; docs/deploy.md).
image:
	scripts/bootstrap.sh test
	$(PY) -m scripts.image build

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache launcher.zip

# requirements.lock: the runtime dependencies of pyproject.toml pinned with their hashes, for
# every supported Python (3.11 and up); the image installs exactly these. Run after changing
# the dependencies, or to take newer releases; commit the result.
lock:
	scripts/bootstrap.sh test
	$(PY) -m pip install -q "uv==0.13.9"
	$(PY) -m uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
	  --output-file requirements.lock
