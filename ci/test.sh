#!/usr/bin/env bash
# The test command (the README's): every test, the slow model tests included.
# pytest exits 5 when it collects nothing; that is a failure here, as any non-zero code is.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m pytest -q -rfEsX "$@"
