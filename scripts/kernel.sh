#!/bin/bash
# Fetch the guest kernel: Debian's cloud kernel package, downloaded and
# unpacked (never installed on the host). Writes
#   DEST/<version>/vmlinux       uncompressed ELF, booted directly (PVH)
#   DEST/<version>/modules/*.ko  the modules the guest needs, debug-stripped
#   DEST/<version>/load.order    those modules in dependency order
#   DEST/<version>/VERSION       the kernel release, e.g. 6.1.0-56-cloud-amd64
#   DEST/current -> <version>
# Idempotent: with DEST/current complete it does nothing and needs no
# network. --update looks for a newer package. Usage: kernel.sh DEST [--update]
set -euo pipefail

DEST=${1:?usage: kernel.sh DEST [--update]}
UPDATE=${2:-}
if [ -z "$UPDATE" ] && [ -s "$DEST/current/vmlinux" ] && [ -s "$DEST/current/load.order" ]; then
	exit 0
fi

# What the guest init loads, in this order after dependency resolution:
# virtio over MMIO (microvm) and PCI (q35), block, erofs, overlay, network,
# the virtio-serial agent channel, and the ACPI power button. ext4 is built
# into the cloud kernel. crc32c-intel is left out on purpose: TCG's CPU has
# no SSE4.2, so it fails to load and costs ~80 ms trying.
MODULES=(virtio_mmio virtio_pci virtio_blk erofs overlay virtio_net virtio_console button evdev)

meta=linux-image-cloud-amd64
pkg=$(apt-cache depends --important "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$pkg" ]; then
	apt-get update -q >/dev/null
	pkg=$(apt-cache depends --important "$meta" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
[ -n "$pkg" ] || { echo "kernel: cannot resolve $meta to a kernel package" >&2; exit 1; }
ver=${pkg#linux-image-}
if [ -s "$DEST/$ver/vmlinux" ] && [ -s "$DEST/$ver/load.order" ]; then
	ln -sfn "$ver" "$DEST/current"
	exit 0
fi

echo "kernel: fetching $pkg"
work=$(mktemp -d "${TMPDIR:-/tmp}/hypeman-kernel.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -q "$pkg" >/dev/null)
dpkg-deb -x "$work"/"$pkg"_*.deb "$work/x"

# vmlinuz is a bzImage whose payload is LZ4 (legacy frame, magic 02 21 4c 18).
vmlinuz="$work/x/boot/vmlinuz-$ver"
off=$(grep -obUaP '\x02\x21\x4c\x18' "$vmlinuz" | head -1 | cut -d: -f1)
[ -n "$off" ] || { echo "kernel: no LZ4 payload in $vmlinuz" >&2; exit 1; }
tail -c +"$((off + 1))" "$vmlinuz" | lz4 -dc >"$work/vmlinux" 2>/dev/null || true
[ "$(head -c 4 "$work/vmlinux" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] ||
	{ echo "kernel: the unpacked kernel is not an ELF file" >&2; exit 1; }

out="$DEST/$ver.tmp"
rm -rf "$out"
mkdir -p "$out/modules"
depmod -b "$work/x" "$ver"
: >"$out/load.order"
for m in "${MODULES[@]}"; do
	modprobe -d "$work/x" -S "$ver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
	name=$(basename "$ko")
	case "$name" in crc32c-intel.ko | crc32c_intel.ko) continue ;; esac
	cp "$ko" "$out/modules/$name"
	strip --strip-debug "$out/modules/$name"
	echo "$name" >>"$out/load.order"
done
mv "$work/vmlinux" "$out/vmlinux"
echo "$ver" >"$out/VERSION"
rm -rf "${DEST:?}/$ver"
mv "$out" "$DEST/$ver"
ln -sfn "$ver" "$DEST/current"
echo "kernel: $ver ready in $DEST/$ver ($(wc -l <"$DEST/$ver/load.order") modules)"
