#!/usr/bin/env bash
# Installs the pinned Claude Code CLI into .cache/claude-code for the end-to-end tests.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="2.1.328"
dest="$root/.cache/claude-code"
bin="$dest/node_modules/.bin/claude"
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "^$version "; then
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "npm not found: cannot install Claude Code" >&2; exit 1; }
mkdir -p "$dest"
echo "installing @anthropic-ai/claude-code@$version ..." >&2
(cd "$dest" && npm install --no-audit --no-fund --loglevel=error "@anthropic-ai/claude-code@$version" >&2)
"$bin" --version >/dev/null
