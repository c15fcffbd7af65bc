#!/usr/bin/env bash
# The benchmark's one entry point: bash bench/run.sh [--quick] [other bench/run.py options]
# Bootstraps .venv, installs wrk and nginx when missing (Debian, as root), then runs bench/run.py.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/bootstrap.sh

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} with apt-get ..." >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 \
      || echo "apt-get could not install ${missing[*]}" >&2
  else
    echo "missing: ${missing[*]}; install them (Debian: sudo apt-get install -y ${missing[*]})." >&2
  fi
fi
if ! command -v wrk >/dev/null; then
  echo "bench needs wrk (the load generator) and cannot run without it." >&2
  exit 1
fi
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  echo "nginx is missing: the upstream falls back to a uvicorn static server (slower; see bench/README.md)." >&2
fi

exec .venv/bin/python bench/run.py "$@"
