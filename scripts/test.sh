#!/usr/bin/env bash
# Runs the whole test suite. Bootstraps .venv and the Claude Code CLI used by the end-to-end tests.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh dev
bash scripts/install-claude-code.sh || echo "warning: the Claude Code CLI could not be installed; its end-to-end tests will say why" >&2
bash scripts/install-chromium.sh || echo "warning: Chromium could not be installed; the console's browser tests will say why" >&2
# PostgreSQL and Redis for the store and shared-counter tests (started if not running).
while IFS='=' read -r name value; do
  [ -n "$name" ] && [ -z "${!name:-}" ] && export "$name=$value"
done < <(bash scripts/services.sh)
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
