# Sourced by setup.sh and test.sh.

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# pip in the project's venv, without two kinds of noise: the machine's notes about configured
# package folders that do not exist here ("WARNING: Location 'file:///...' is ignored"), and
# setuptools' page-long warning that an editable install has a folder named like its package
# (edgeresnet/ is that package, by design). Every other line, and pip's exit status, pass through.
venv_pip() {
  PYTHONWARNINGS="ignore:Editable installation" .venv/bin/python -m pip "$@" 2>&1 \
    | { grep -v "^WARNING: Location 'file:.*' is ignored" || true; }
}
