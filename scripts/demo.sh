#!/usr/bin/env bash
# The main job: an observing night (ACADA simulation, ingestion, replication, WMS processing
# to DL3, gammapy analysis, report). Arguments go to `dpps night` (e.g. --dir DIR, --json).
# The small archive tour is `dpps demo`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exec dpps night "$@"
