# Sourced by scripts/demo and scripts/test: create .venv with Python >= 3.11 and
# install the package with the extras given in $EXTRAS (editable), at the exact
# versions of requirements/constraints.txt (what CI tested; `make lock` refreshes it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/_python.sh
py="$(pick_python)"
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  "$py" -m venv .venv
fi
constraints=requirements/constraints.txt
stamp=".venv/.installed-${EXTRAS//,/-}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "$constraints" -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -c "$constraints" --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -c "$constraints" -e ".[${EXTRAS}]"
  touch "$stamp"
fi
