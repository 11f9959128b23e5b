# The targets a contributor (and CI) runs. `make test` is what .ci/run calls.
.PHONY: demo test lint typecheck unit bench-drain bench-refresh bench-csv bench-scale launcher-zip image clean

PY := .venv/bin/python

demo:
	scripts/bootstrap.sh
	$(PY) -m scripts.demo

test:
	scripts/bootstrap.sh test
	$(PY) -m ruff check worker launcher tests bench scripts
	$(PY) -m mypy
	$(PY) -m pytest -q

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

# The launcher Lambda's code: launcher/*.py alone (the runtime provides boto3).
launcher-zip:
	$(PY) -m scripts.build_launcher_zip --output launcher.zip

# The worker image from the Dockerfile, with buildah (no Docker engine needed; docs/deploy.md).
image:
	scripts/bootstrap.sh test
	$(PY) -m scripts.image build

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache launcher.zip
