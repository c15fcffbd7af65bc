#!/usr/bin/env bash
# Runs the cloudgate demo: the emulator and the gateway on loopback, SQLite, no configuration.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh" dev
exec "$root/.venv/bin/cloudgate" demo "$@"
