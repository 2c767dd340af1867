#!/usr/bin/env bash
# The student's kernel, as on Colab: a throw-away virtual environment with only Python, pip, a torch (Colab ships
# one) and ipykernel (every Jupyter has it), registered as the Jupyter kernel "dldna-student" under
# <venv>/share/jupyter (point Jupyter at it with JUPYTER_PATH=<venv>/share/jupyter). Everything else a notebook
# needs must come from the notebook's own install cell: `make test-notebooks` runs every notebook in this kernel with
# DLDNA_INSTALL pointing the cell at this clone.
#   usage: scripts/student-kernel.sh PYTHON VENV
set -euo pipefail
python=${1:?usage: scripts/student-kernel.sh PYTHON VENV}
venv=${2:?usage: scripts/student-kernel.sh PYTHON VENV}
cd "$(dirname "$0")/.."
rm -rf "$venv"
"$python" -m venv "$venv"
# torch at the version of local set-up (pip takes it from this machine's disk when it can); nothing of dldna-lite's own
"$venv/bin/pip" install -q -c constraints.txt torch ipykernel
"$venv/bin/python" -m ipykernel install --prefix "$venv" --name dldna-student \
  --display-name "dldna-lite student (install cell only)" >/dev/null
if "$venv/bin/python" -c "import dldna_lite" 2>/dev/null; then
  echo "student kernel: dldna_lite is importable before any install cell ran" >&2; exit 1
fi
echo "student kernel: $venv ($("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)'), ipykernel)"
