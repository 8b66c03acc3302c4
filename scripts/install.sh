#!/usr/bin/env bash
# Install dftflow and its whole stack into ./.venv (idempotent).
#   bash scripts/install.sh          # the package with the embedded engine (CHGNet + GPAW)
#   bash scripts/install.sh --test   # ... plus test tools and the packages the tests use (SLURM, munge)
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[[ "${1:-}" == "--test" ]] && with_tests=1

apt_pkgs=(libxc-dev libopenblas-dev)
(( with_tests )) && apt_pkgs+=(slurm-wlm munge)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if (( ${#missing[@]} )); then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
  else
    echo "warning: missing system packages ${missing[*]} (install them with apt as root)" >&2
  fi
fi

PY="${PYTHON:-python3}"
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
. .venv/bin/activate
log=.venv/install.log
pipq() { python -m pip install -q "$@" >>"$log" 2>&1 || { tail -30 "$log" >&2; echo "error: pip install $* failed (log: $log)" >&2; exit 1; }; }
: >"$log"
pipq -U pip
# The CPU build of torch first, then everything else held to it by constraints.txt.
pipq torch==2.13.0
extras="embedded"
(( with_tests )) && extras="embedded,test"
# GPAW compiles from source; its sources are C++ (see README).
CC=g++ LDSHARED="g++ -shared" pipq -c constraints.txt -e ".[${extras}]"
python -c "import dftflow, pymatgen, custodian, fireworks, chgnet, sevenn, gpaw, rdkit" \
  || { echo "error: installation incomplete" >&2; exit 1; }
echo "dftflow installed in .venv ($(.venv/bin/dftflow --version))"
