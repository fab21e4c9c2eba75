# Sourced by setup.sh, setup_ncnn.sh and test.sh.

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# pip in the project's venv, without two kinds of noise: the machine's notes about configured
# package folders that do not exist here ("WARNING: Location 'file:///...' is ignored"), and
# setuptools' page-long warning that an editable install has a folder named like its package
# (edgeresnet/ is that package, by design). Every other line, and pip's exit status, pass through.
venv_pip() {
  PYTHONWARNINGS="ignore:Editable installation" .venv/bin/python -m pip "$@" 2>&1 \
    | { grep -v "^WARNING: Location 'file:.*' is ignored" || true; }
}

# apt-get install the named Debian packages that are not installed yet (update first, only then).
apt_install_missing() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing system packages: ${missing[*]}"
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
