#!/usr/bin/env bash
# The main job: init a workspace, generate sample data, ingest, query, retrieve.
# Arguments go to `dpps demo` (e.g. --dir DIR, --json).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exec dpps demo "$@"
