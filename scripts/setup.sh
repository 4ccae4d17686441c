#!/bin/bash
# Install every Debian package hypeman needs to build, run and test.
# Idempotent: when everything is present it changes nothing and makes no
# network access. Needs root (or sudo) only when something is missing.
set -euo pipefail

PACKAGES=(
	# build
	build-essential gcc make pkg-config clang-format
	# libraries
	libmicrohttpd-dev libjansson-dev libsqlite3-dev libssl-dev libcurl4-openssl-dev
	libarchive-dev libyaml-dev libcmocka-dev
	# tools the daemon and tests drive
	curl ca-certificates
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
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
