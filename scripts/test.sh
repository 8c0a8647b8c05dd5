#!/usr/bin/env bash
# The README's test command runs this: the whole suite, bounded fuzzing included.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 -m pytest -q -p no:cacheprovider "$@"
