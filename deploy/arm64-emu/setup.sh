#!/usr/bin/env bash
# An emulated Raspberry Pi userland on an x86-64 Debian host, for testing the Pi code path without a
# Pi: qemu-user (Debian's qemu-user-static), an arm64 Python 3.11 from Debian packages (apt-get
# download + dpkg -x, nothing installed for arm64), and the aarch64 wheels of numpy and ai-edge-litert
# from PyPI unpacked into a PYTHONPATH folder. Idempotent: a second run only checks the cache.
#
#   bash deploy/arm64-emu/setup.sh [CACHE]      (default: .cache/arm64-emu in the repo, ignored by git)
#   CACHE/bin/python3 -c 'import platform; print(platform.machine())'   → aarch64
#
# Why the launcher (CACHE/bin/python3) does what it does:
# - ai-edge-litert's CPU detection reads /proc/cpuinfo and crashes (SIGSEGV on creating the
#   Interpreter) when it sees the host's x86 one: an ARM cpuinfo is bind-mounted over it inside a
#   private mount namespace (unshare -m; unshare -rm for a non-root user), never on the host.
# - QEMU_CPU=cortex-a72 (a Raspberry Pi 4; cortex-a76 for a Pi 5): qemu's default "max" CPU
#   advertises SVE/SME/I8MM extensions that XNNPACK then picks kernels for, and under qemu 7.2 those
#   gave wrong int8 outputs; a Pi's real core gives outputs identical to x86.
# - argv[0] of the emulated Python is the launcher, so sys.executable (which the bench uses to start
#   its per-model processes) goes through the launcher again.
# Versions of numpy and ai-edge-litert: those of the host's Python ($HOST_PYTHON, default python3), so
# that ARM and x86 results come from the same runtime version.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${1:-$REPO/.cache/arm64-emu}
HOST_PYTHON=${HOST_PYTHON:-python3}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

need_root() { [ "$(id -u)" = 0 ] || { echo "setup.sh: $1 needs root (or install it yourself): $2" >&2; exit 2; }; }

# 1. the emulator
if ! command -v qemu-aarch64-static >/dev/null; then
    need_root "installing qemu-user-static" "apt-get install qemu-user-static"
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user-static >/dev/null
fi

# 2. versions to match
NUMPY=$("$HOST_PYTHON" -c 'from importlib.metadata import version; print(version("numpy"))')
LITERT=$("$HOST_PYTHON" -c 'from importlib.metadata import version; print(version("ai-edge-litert"))')
STAMP="$CACHE/.ready-numpy-$NUMPY-litert-$LITERT"

if [ ! -f "$STAMP" ]; then
    # 3. arm64 Python 3.11 userland from Debian packages, unpacked, not installed
    if [ ! -x "$CACHE/root/usr/bin/python3.11" ]; then
        if ! dpkg --print-foreign-architectures | grep -qx arm64; then
            need_root "adding the arm64 package index" "dpkg --add-architecture arm64 && apt-get update"
            dpkg --add-architecture arm64
            apt-get update -q >/dev/null
        fi
        if ! apt-cache show python3.11-minimal:arm64 >/dev/null 2>&1; then
            need_root "refreshing the package index" "apt-get update"
            apt-get update -q >/dev/null
        fi
        rm -rf "$CACHE/debs" "$CACHE/root.tmp" && mkdir -p "$CACHE/debs" "$CACHE/root.tmp"
        pkgs=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
                   --no-enhances --no-pre-depends python3.11-minimal:arm64 libpython3.11-stdlib:arm64 libstdc++6:arm64 \
               | grep -E '^[a-z0-9][^ ]*:arm64$' | grep -vE '^(dpkg|tar|install-info):' | sort -u)
        (cd "$CACHE/debs" && apt-get download $pkgs >/dev/null)
        for deb in "$CACHE"/debs/*.deb; do dpkg -x "$deb" "$CACHE/root.tmp"; done
        # empty site folders: the emulated Python must not pick up the host's x86 packages there
        mkdir -p "$CACHE/root.tmp/usr/lib/python3/dist-packages" "$CACHE/root.tmp/usr/local/lib/python3.11/dist-packages"
        rm -rf "$CACHE/root" && mv "$CACHE/root.tmp" "$CACHE/root"
        rm -rf "$CACHE/debs"
    fi

    # 4. aarch64 wheels, unpacked into one PYTHONPATH folder (Debian bookworm: glibc 2.36)
    rm -rf "$CACHE/wheels" "$CACHE/site.tmp" && mkdir -p "$CACHE/wheels" "$CACHE/site.tmp"
    plats=()
    for v in 17 24 26 27 28 31 34 35 36; do plats+=(--platform "manylinux_2_${v}_aarch64"); done
    "$HOST_PYTHON" -m pip download -q --disable-pip-version-check --only-binary=:all: --no-deps "${plats[@]}" \
        --platform manylinux2014_aarch64 --python-version 3.11 --implementation cp --abi cp311 \
        -d "$CACHE/wheels" "numpy==$NUMPY" "ai-edge-litert==$LITERT"
    for whl in "$CACHE"/wheels/*.whl; do "$HOST_PYTHON" -m zipfile -e "$whl" "$CACHE/site.tmp"; done
    rm -rf "$CACHE/site" && mv "$CACHE/site.tmp" "$CACHE/site" && rm -rf "$CACHE/wheels"

    # 5. what ai-edge-litert's CPU detection reads instead of the host's /proc/cpuinfo: four
    #    Cortex-A72 cores, as on a Raspberry Pi 4 (the board itself is not claimed: no Model line)
    for i in 0 1 2 3; do
        printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$i"
    done > "$CACHE/cpuinfo"
    rm -f "$CACHE"/.ready-*
    touch "$STAMP"
fi

# 6. the launchers (rewritten every time: cheap, and they carry the cache's absolute path)
mkdir -p "$CACHE/bin"
cat > "$CACHE/bin/python3-inner" <<LAUNCH
#!/bin/sh
# inside the private mount namespace: run the arm64 Python under qemu-user
export QEMU_LD_PREFIX="$CACHE/root" QEMU_CPU="\${QEMU_CPU:-cortex-a72}"
export EDGEKD_EMULATION="qemu-user aarch64 (\$QEMU_CPU)"
export PYTHONPATH="$CACHE/site\${PYTHONPATH:+:\$PYTHONPATH}"
exec qemu-aarch64-static -0 "$CACHE/bin/python3" "$CACHE/root/usr/bin/python3.11" "\$@"
LAUNCH
cat > "$CACHE/bin/python3" <<LAUNCH
#!/bin/sh
# arm64 Python 3.11 under qemu-user with an ARM /proc/cpuinfo (see deploy/arm64-emu/setup.sh)
if [ -n "\${EDGEKD_EMU_NS:-}" ]; then exec "$CACHE/bin/python3-inner" "\$@"; fi
[ "\$(id -u)" = 0 ] && ns="unshare -m" || ns="unshare -rm"
export EDGEKD_EMU_NS=1
exec \$ns sh -c 'mount --bind "\$0" /proc/cpuinfo && exec "\$@"' "$CACHE/cpuinfo" "$CACHE/bin/python3-inner" "\$@"
LAUNCH
chmod +x "$CACHE/bin/python3" "$CACHE/bin/python3-inner"

"$CACHE/bin/python3" -c 'import platform, numpy; from ai_edge_litert import interpreter; print("arm64-emu ready:", platform.machine(), "python", platform.python_version(), "numpy", numpy.__version__)'
echo "$CACHE/bin/python3"
