#!/bin/bash
# Builds the Debian package from a built static binary with dpkg-deb alone:
# no network, no debhelper, no source package.
#
#   packaging/build-deb.sh BIN OUTDIR     -> OUTDIR/selfprotect_VERSION_amd64.deb
#
# The version and the build date come from packaging/debian/changelog, so the
# same tree gives the same package bytes (SOURCE_DATE_EPOCH, gzip -n, fixed
# owners and mtimes).
set -euo pipefail

if [ $# -ne 2 ]; then
	echo "usage: $0 BIN OUTDIR" >&2
	exit 2
fi
bin=$(realpath "$1")
out=$2
here=$(cd "$(dirname "$0")" && pwd)
deb=$here/debian

for tool in dpkg-deb dpkg-parsechangelog go md5sum gzip; do
	command -v "$tool" >/dev/null || { echo "$0: $tool not found (apt-get install dpkg-dev)" >&2; exit 1; }
done
# ELF, 64-bit, little endian, executable, machine x86-64.
elf=$(od -An -tx1 -N20 "$bin" | tr -d ' \n')
if [ "$elf" != 7f454c4602010100000000000000000002003e00 ]; then
	echo "$0: $bin is not an x86-64 executable; the package is amd64" >&2
	exit 1
fi

version=$(dpkg-parsechangelog -l "$deb/changelog" -S Version)
SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l "$deb/changelog" -S Timestamp)
export SOURCE_DATE_EPOCH

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -m 0755 "$root"

"$bin" gen-docs "$work/gen"
DESTDIR=$root PREFIX=/usr CONFIG=replace "$here/install.sh" "$bin" "$work/gen"

doc=$root/usr/share/doc/selfprotect
install -d -m 0755 "$doc"
gzip -9n <"$deb/changelog" >"$doc/changelog.gz"
"$here/gen-copyright.sh" "$bin" "$deb/copyright.in" >"$doc/copyright"
chmod 0644 "$doc/changelog.gz" "$doc/copyright"
if [ -s "$deb/lintian-overrides" ]; then
	install -d -m 0755 "$root/usr/share/lintian/overrides"
	install -m 0644 "$deb/lintian-overrides" "$root/usr/share/lintian/overrides/selfprotect"
fi

# Control area.
install -d -m 0755 "$root/DEBIAN"
install -m 0755 "$deb/postinst" "$deb/prerm" "$deb/postrm" "$root/DEBIAN/"
# Everything under /etc is a conffile: dpkg keeps an administrator's edits
# across upgrades and asks before replacing them.
(cd "$root" && find etc -type f | sort | sed 's|^|/|') >"$root/DEBIAN/conffiles"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort | tr '\n' '\0' | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
# Installed-Size in KiB, counted the way dpkg-gencontrol does: each file
# rounded up to a KiB, plus one per directory and symlink.
size=$(cd "$root" && find . -path ./DEBIAN -prune -o \( -type f -printf '%s\n' \) -o \( ! -type f -printf '1024\n' \) |
	awk '{ kib += int(($1 + 1023) / 1024) } END { print kib }')
sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$size/" "$deb/control.in" >"$root/DEBIAN/control"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$out"
pkg=$out/selfprotect_${version}_amd64.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$pkg" >/dev/null
echo "$pkg"
