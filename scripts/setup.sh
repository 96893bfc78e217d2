#!/usr/bin/env bash
# One-time (idempotent) set-up on a fresh python3.11 machine:
#   Debian's ffmpeg and espeak-ng (when root and missing), .venv, the known-good set of requirements/,
#   the three --no-deps packages, and this project in editable mode. A second run reuses what is there:
#   it reinstalls only when requirements/ or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: warning: ${missing[*]} missing; install them (e.g. sudo apt-get install ${missing[*]})." >&2
    echo "setup: without espeak-ng sample clips use a synthetic voice; ffmpeg is needed by some checks." >&2
  fi
fi

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3; do command -v "$c" >/dev/null 2>&1 && { PY=$c; break; }; done
fi
[ -x .venv/bin/python ] || { echo "setup: creating .venv with $PY"; "$PY" -m venv .venv; }

stamp=.venv/.pt-setup-stamp
want=$(cat requirements/base.txt requirements/nodeps.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing the known-good set into .venv (first time: a few minutes, ~7 GB)"
  .venv/bin/python -m pip install -q --upgrade pip 2>/dev/null || true
  .venv/bin/python -m pip install -q -r requirements/base.txt
  .venv/bin/python -m pip install -q --no-deps -r requirements/nodeps.txt
  .venv/bin/python -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
else
  echo "setup: .venv is up to date"
fi
