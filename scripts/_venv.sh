# Sourced by scripts/demo, scripts/test and the benchmarks: make .venv and install the project into it, once per
# change of pyproject.toml or requirements.lock. Versions are pinned by requirements.lock (regenerate: scripts/lock).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "identity needs Python 3.11 or newer (found: $("$PYTHON" --version 2>&1)). Set PYTHON=/path/to/python3.11." >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=".venv/.installed-$(cat pyproject.toml requirements.lock | "$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])')-${1:-app}"
if [ ! -f "$stamp" ]; then
  echo "Installing identity and its dependencies into .venv (log: .venv/install.log) ..." >&2
  target=.; [ "${1:-app}" = test ] && target='.[test]'
  if ! { .venv/bin/python -m pip install -q --disable-pip-version-check -U pip &&
         .venv/bin/python -m pip install -q --disable-pip-version-check -c requirements.lock -e "$target"; } >.venv/install.log 2>&1; then
    cat .venv/install.log >&2
    echo "Installing identity failed (above)." >&2
    exit 1
  fi
  rm -f .venv/.installed-* && touch "$stamp"
fi
