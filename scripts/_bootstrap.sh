# Sourced by scripts/demo and scripts/test: make .venv and install the project into it.
# Usage: bootstrap_venv EXTRAS   (e.g. "embedded" or "dev"). Re-installs only when pyproject changes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${QUEUE_SYSTEM_VENV:-$ROOT/.venv}"

bootstrap_venv() {
  local extras="$1"
  local python="${PYTHON:-python3}"
  if [ ! -x "$VENV/bin/python" ]; then
    echo ">> creating virtualenv $VENV" >&2
    "$python" -m venv "$VENV"
  fi
  local stamp="$VENV/.installed-$extras"
  # [dev] includes every other extra: a venv installed with it (by scripts/test, or at the
  # lowest versions by scripts/test-lowest) needs nothing more.
  local full
  for full in "$VENV/.installed-dev" "$VENV/.installed-lowest"; do
    if [ -f "$full" ] && [ ! "$ROOT/pyproject.toml" -nt "$full" ]; then
      return 0
    fi
  done
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo ">> installing queue_system[$extras] into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[$extras]" >&2
    touch "$stamp"
  fi
}
