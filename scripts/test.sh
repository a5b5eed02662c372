#!/usr/bin/env bash
# The test command: ruff (lint and format), mypy --strict, the import-linter layer contracts and
# pytest (SQLite and a throwaway PostgreSQL), then the use-case verification report. Arguments
# go to pytest. Reports land in reports/.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
mkdir -p reports

pg_found() { python -c 'import sys, dpps.testing.postgres as p; sys.exit(not p.postgres_available())'; }

# PostgreSQL server binaries: install them if missing and we may (root with apt-get).
if ! pg_found && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "PostgreSQL not found; installing it with apt-get" >&2
    apt-get update -q && { apt-get install -y -q postgresql-15 || apt-get install -y -q postgresql; }
fi
if ! pg_found; then
    echo "error: PostgreSQL server binaries (initdb, pg_ctl) not found. Install PostgreSQL" >&2
    echo "  (apt-get install postgresql-15) or set DPPS_PG_BIN to its bin directory." >&2
    exit 1
fi
# PostgreSQL refuses to run as root: the test server runs as the 'postgres' OS user.
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin postgres \
        || { echo "error: could not create the 'postgres' OS user" >&2; exit 1; }
fi
# Headless Chromium for the dashboard tests (Debian's package; Playwright drives it and never
# downloads a browser of its own).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Chromium not found; installing it with apt-get" >&2
    { apt-get update -q && apt-get install -y -q chromium; } \
        || echo "warning: could not install chromium; the browser tests will fail" >&2
fi
# XRootD server and client, nftables, iproute2: the root:// storage tests and the testbed.
if [ "$(id -u)" = 0 ]; then
    bash "$REPO_ROOT/scripts/testbed-deps.sh" \
        || echo "warning: could not install the testbed packages; the XRootD tests will fail" >&2
fi
# promtool for the monitoring files (Debian's prometheus package, promtool alone unpacked).
if [ "$(id -u)" = 0 ]; then
    bash "$REPO_ROOT/scripts/monitoring-deps.sh" \
        || echo "warning: could not install promtool; the promtool tests will fail" >&2
fi
export DPPS_REQUIRE_CHROMIUM=1  # the browser tests fail, never skip, without Chromium
export DPPS_REQUIRE_PROMTOOL=1  # the promtool tests fail, never skip, without promtool
export DPPS_REQUIRE_POSTGRES=1  # the PostgreSQL tests fail, never skip, if the server is missing

status=0
echo "== ruff"
lint_dirs=(src tests)
[ -d benchmarks ] && lint_dirs+=(benchmarks)
ruff check --output-format json "${lint_dirs[@]}" >reports/ruff.json
ruff check "${lint_dirs[@]}" | tee reports/ruff.txt
ruff_rc=${PIPESTATUS[0]}
echo "== ruff format (the layout is the formatter's)"
ruff format --check "${lint_dirs[@]}"
format_rc=$?
echo "== import contracts (pyproject.toml [tool.importlinter])"
lint-imports --no-cache | tee reports/import-contracts.txt
contracts_rc=${PIPESTATUS[0]}
echo "== mypy"
mypy | tee reports/mypy.txt
mypy_rc=${PIPESTATUS[0]}
echo "== duplication (pylint's symilar; a figure for the verification report, never a failure)"
dup=()
if command -v symilar >/dev/null 2>&1; then
    find src -name '*.py' -print0 | sort -z \
        | xargs -0 symilar -d 6 -i --ignore-docstrings --ignore-imports --ignore-signatures \
            >reports/duplication.txt
    if grep -q '^TOTAL ' reports/duplication.txt; then
        grep '^TOTAL ' reports/duplication.txt
        dup=(--duplication reports/duplication.txt)
    else
        echo "warning: symilar wrote no TOTAL line; no duplication figure" >&2
    fi
else
    echo "warning: symilar (pylint) not installed; no duplication figure" >&2
fi
echo "== pytest"
# The free disk before and after: a whole run needs a few GB of /tmp (a passed test's files
# are removed when it ends; pyproject.toml's tmp_path_retention_policy).
df -h "${TMPDIR:-/tmp}" | tail -n 1
pytest -n 2 --dist loadgroup --junitxml=reports/junit.xml --cov=dpps --cov-report=xml:reports/coverage.xml \
    --cov-report=term:skip-covered --durations=25 "$@"
pytest_rc=$?  # exit code 5 (no tests collected) counts as a failure too
df -h "${TMPDIR:-/tmp}" | tail -n 1

echo "== verification"
if dpps verify --help >/dev/null 2>&1; then
    qa=(--coverage reports/coverage.xml --ruff reports/ruff.json --mypy reports/mypy.txt "${dup[@]}")
    grep -q '^Contracts: ' reports/import-contracts.txt \
        && qa+=(--contracts reports/import-contracts.txt)
    dpps verify reports/junit.xml "${qa[@]}" --format html -o reports/verification.html \
        && dpps verify reports/junit.xml "${qa[@]}" --format markdown >reports/verification.md \
        && cat reports/verification.md \
        || { echo "error: dpps verify failed" >&2; status=1; }
    # The release report (reports/release-<version>.html, .md and, with Chromium, .pdf): the
    # same inputs, about 3 s, plus about 3 s for the PDF. Only a failure of the pure-Python
    # HTML and Markdown fails the run; a PDF that Chromium cannot print is a warning.
    release=(dpps verify reports/junit.xml "${qa[@]}" --release --release-dir reports)
    if ! { command -v chromium >/dev/null 2>&1 && "${release[@]}" --pdf; }; then
        command -v chromium >/dev/null 2>&1 && echo "warning: no PDF of the release report" >&2
        "${release[@]}" || { echo "error: dpps verify --release failed" >&2; status=1; }
    fi
else
    echo "warning: 'dpps verify' is not available; no verification report" >&2
fi

echo "== summary: ruff exit $ruff_rc, format exit $format_rc, contracts exit $contracts_rc," \
    "mypy exit $mypy_rc, pytest exit $pytest_rc"
[ "$pytest_rc" = 5 ] && echo "error: pytest collected no tests" >&2
for rc in "$ruff_rc" "$format_rc" "$contracts_rc" "$mypy_rc" "$pytest_rc"; do
    [ "$rc" = 0 ] || status=1
done
exit "$status"
