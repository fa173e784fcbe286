#!/bin/sh
# Regenerates the rasdaemon database fixtures in this folder: boots a Debian
# kernel under QEMU (software emulation), runs Debian's own rasdaemon binary
# with `-f -r` (foreground, record to SQLite) in the guest, injects corrected
# and uncorrected machine checks with the kernel's mce-inject module, stops
# rasdaemon with SIGTERM (it closes the database) and copies
# /var/lib/rasdaemon/ras-mc_event.db out over the serial console (base64).
# README.md beside this script lists what is injected and why.
#
# Needs root (apt-get download works without, dpkg-deb does not care), and
# qemu-system-x86_64, busybox-static, cpio and xz (make kernel-test installs
# them). Usage: make-db.sh [intel|amd]...   (default: intel amd)
#
# The kernel: $SELFPROTECT_KERNEL_CACHE's 6.12 folder when set (the kernel
# suite's cache: vmlinuz + modules/mce_inject.ko), else the newest
# linux-image-6.12.*-unsigned package is downloaded and unpacked.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/rasdaemon-db.XXXXXX")
trap 'rm -rf "$work"' EXIT
cpus=${*:-intel amd}

# --- packages: rasdaemon and the shared libraries it links against --------
cd "$work"
apt-get download rasdaemon libsqlite3-0 libc6 >/dev/null 2>&1 || {
	echo "apt-get download failed: run apt-get update" >&2
	exit 1
}
mkdir pkgs
for deb in *.deb; do dpkg-deb -x "$deb" pkgs; done
rasver=$(dpkg-deb -f rasdaemon_*.deb Version)
sqlver=$(dpkg-deb -f libsqlite3-0_*.deb Version)
libcver=$(dpkg-deb -f libc6_*.deb Version)

# --- kernel --------------------------------------------------------------
kdir=""
if [ -n "${SELFPROTECT_KERNEL_CACHE:-}" ]; then
	kdir=$(ls -d "$SELFPROTECT_KERNEL_CACHE"/linux-image-6.12.*-unsigned_* 2>/dev/null | grep -v '\.lock$' | tail -1 || true)
fi
if [ -n "$kdir" ] && [ -f "$kdir/vmlinuz" ] && [ -f "$kdir/modules/mce_inject.ko" ]; then
	vmlinuz=$kdir/vmlinuz
	mceko=$kdir/modules/mce_inject.ko
	kpkg=$(basename "$kdir")
else
	kpkg=$(apt-cache search --names-only '^linux-image-6\.12\..*-amd64-unsigned$' | cut -d' ' -f1 | sort -V | tail -1)
	[ -n "$kpkg" ] || { echo "no linux-image-6.12.*-amd64-unsigned package in the lists" >&2; exit 1; }
	apt-get download "$kpkg" >/dev/null 2>&1
	mkdir kpkg
	dpkg-deb -x "$kpkg"_*.deb kpkg
	vmlinuz=$(ls kpkg/boot/vmlinuz-*)
	xz -dc "$(find kpkg -name 'mce-inject.ko.xz')" >mce_inject.ko
	mceko=$work/mce_inject.ko
	kpkg=$(basename "$(ls "$kpkg"_*.deb)" .deb)
fi

# --- guest image -----------------------------------------------------------
mkdir -p root/bin root/lib64 root/lib/x86_64-linux-gnu root/usr/sbin root/var/lib/rasdaemon \
	root/proc root/sys root/dev root/tmp root/run root/etc
cp /bin/busybox root/bin/busybox
for a in sh cat cut echo mount sleep poweroff kill base64 ls mkdir sync insmod uname test dmesg; do
	ln -s busybox "root/bin/$a"
done
cp pkgs/usr/sbin/rasdaemon root/usr/sbin/
cp -L pkgs/lib64/ld-linux-x86-64.so.2 root/lib64/
for l in libc.so.6 libm.so.6; do cp -L "pkgs/lib/x86_64-linux-gnu/$l" root/lib/x86_64-linux-gnu/; done
cp -L pkgs/usr/lib/x86_64-linux-gnu/libsqlite3.so.0 root/lib/x86_64-linux-gnu/
cp "$mceko" root/mce_inject.ko
cp "$here/guest-init.sh" root/init
chmod 755 root/init
(cd root && find . | cpio -o -H newc --quiet) >initrd.cpio

for cpu in $cpus; do
	case $cpu in
	intel) qcpu=qemu64,vendor=GenuineIntel,family=6,model=85,stepping=4 ;;
	amd) qcpu=qemu64 ;;
	*) echo "unknown CPU $cpu (want intel or amd)" >&2; exit 1 ;;
	esac
	timeout 300 qemu-system-x86_64 -accel tcg,thread=single -cpu "$qcpu" -smp 4 -m 1G \
		-kernel "$vmlinuz" -initrd initrd.cpio \
		-append "console=ttyS0 panic=-1 quiet loglevel=4 ras=cec_disable" \
		-nographic -no-reboot -nodefaults -serial stdio >"console-$cpu.log" 2>&1 || true
	tr -d '\r' <"console-$cpu.log" | sed -n '/^@@DB-BEGIN/,/^@@DB-END/p' | sed '1d;$d' | base64 -d >"$cpu.db" || true
	if ! [ -s "$cpu.db" ]; then
		echo "no database came out of the $cpu guest; console:" >&2
		cat "console-$cpu.log" >&2
		exit 1
	fi
	cp "$cpu.db" "$here/$cpu-6.12.db"
	# The guest's @@ lines, without kernel messages the serial line
	# interleaved into them.
	tr -d '\r' <"console-$cpu.log" | sed 's/\[ *[0-9]*\.[0-9]*\] .*$//' | grep '^@@' |
		grep -v '^@@DB' >"$here/$cpu-6.12.console.txt" || true
	echo "wrote $here/$cpu-6.12.db ($(wc -c <"$cpu.db") bytes)"
done
cat >"$here/versions.txt" <<EOF
rasdaemon $rasver (Debian)
libsqlite3-0 $sqlver
libc6 $libcver
kernel $kpkg
EOF
