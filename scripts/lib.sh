# shellcheck shell=bash
# Sourced by the other scripts: finds Python >= 3.12, then creates or reuses .venv in the
# repository root and (re)installs the project there when pyproject.toml changed.
# Sets REPO_ROOT and VENV, puts $VENV/bin first on PATH.
# Override the interpreter with DPPS_PYTHON=/path/to/python3.12.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"

# True if "$1" actually runs and is Python >= 3.12 (pyenv shims exist on PATH but may fail).
dpps_python_ok() {
    [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1
}

# Print the first usable Python >= 3.12, or return 1.
dpps_find_python() {
    local cand roots root
    for cand in "${DPPS_PYTHON:-}" python3.13 python3.12 python3; do
        if dpps_python_ok "$cand"; then
            command -v "$cand"
            return 0
        fi
    done
    # pyenv installs that are not the global version (so their shims fail); newest first.
    roots=""
    if command -v pyenv >/dev/null 2>&1; then
        roots="$(pyenv root 2>/dev/null || true)"
    fi
    for root in $roots "${HOME:-}/.pyenv"; do
        for cand in $(printf '%s\n' "$root"/versions/3.1[2-9]*/bin/python3 | sort -rV); do
            if dpps_python_ok "$cand"; then
                echo "$cand"
                return 0
            fi
        done
    done
    return 1
}

# Create .venv (or recreate it if broken or too old) and install the project if needed.
dpps_ensure_venv() {
    local python stamp hash
    if ! dpps_python_ok "$VENV/bin/python"; then
        if ! python="$(dpps_find_python)"; then
            echo "error: dpps needs Python >= 3.12 and none was found." >&2
            echo "  Install Python 3.12 or newer (your distribution, python.org, or" >&2
            echo "  'pyenv install 3.12'), or point DPPS_PYTHON at a python3.12 binary." >&2
            exit 1
        fi
        echo "Creating $VENV with $python" >&2
        rm -rf "$VENV"
        "$python" -m venv "$VENV" || { echo "error: '$python -m venv' failed" >&2; exit 1; }
    fi
    stamp="$VENV/.dpps-install-stamp"
    hash="$(sha256sum "$REPO_ROOT/pyproject.toml" | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$hash" ]; then
        echo "Installing dpps and its test dependencies into $VENV" >&2
        # Build-backend warnings go to the log; on failure the log is shown.
        if ! "$VENV/bin/python" -m pip install -q -e "$REPO_ROOT[test,pipelines]" >"$VENV/pip.log" 2>&1
        then
            cat "$VENV/pip.log" >&2
            echo "error: pip install -e '.[test,pipelines]' failed (log: $VENV/pip.log)" >&2
            exit 1
        fi
        echo "$hash" >"$stamp"
    fi
}

dpps_ensure_venv
export PATH="$VENV/bin:$PATH"
