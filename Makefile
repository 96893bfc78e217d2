# `make demo` and `make test` each set up what is missing (.venv, packages, ffmpeg/espeak-ng) and run.
.PHONY: setup demo test clean
PT_DEMO_OUT ?= outputs/demo

setup:
	@bash scripts/setup.sh

demo: setup
	HF_HUB_OFFLINE=1 .venv/bin/pt demo --out $(PT_DEMO_OUT)

test: setup
	HF_HUB_OFFLINE=1 RAY_AUTH_MODE=disabled .venv/bin/python -m pytest -q

clean:
	rm -rf outputs .pytest_cache
