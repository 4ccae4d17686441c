#!/bin/bash
# Install every Debian package hypeman needs to build, run and test.
# Idempotent: when everything is present it changes nothing and makes no
# network access. Needs root (or sudo) only when something is missing.
set -euo pipefail

PACKAGES=(
	# build
	build-essential gcc make pkg-config clang-format
	# the fuzz targets (tests/fuzz): clang with libFuzzer and the sanitizers' runtime
	clang libclang-rt-14-dev
	# libraries
	libmicrohttpd-dev libjansson-dev libsqlite3-dev libssl-dev libcurl4-openssl-dev
	libarchive-dev libyaml-dev libcmocka-dev
	# tools the daemon drives: root disks, the VMM, and the guest kernel's
	# unpacking (the cloud kernel's bzImage is LZ4; cpio/kmod for checks), zstd for
	# compressed snapshot memory
	erofs-utils e2fsprogs tar qemu-system-x86 lz4 zstd kmod
	# the instances' network: bridge and TAPs (iproute2), NAT and isolation (nftables)
	iproute2 nftables
	# tools the tests and benchmarks drive: a real registry, images made from
	# Debian's busybox, the skopeo+umoci pipeline bench/pull compares with, and
	# sqlite3 to stage what a crashed daemon leaves in its database
	curl ca-certificates docker-registry busybox-static skopeo umoci sqlite3
)

missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing+=("$p")
	fi
done
# Node.js runs the SDK and integration tests. Any node >= 18 with npm will do
# (the distribution's, or one already installed from elsewhere).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	missing+=(nodejs npm)
fi

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "setup: need root to install: ${missing[*]}" >&2; exit 1; }
	SUDO=sudo
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only if they are missing or a day old.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
	$SUDO apt-get update -q
fi
# Packages such as docker-registry ship a service; we start our own on
# loopback in tests, so keep apt from starting theirs (policy-rc.d 101).
cleanup_policy=
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
	$SUDO chmod 755 /usr/sbin/policy-rc.d
	cleanup_policy=1
fi
status=0
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" || status=$?
[ -n "$cleanup_policy" ] && $SUDO rm -f /usr/sbin/policy-rc.d
exit $status
