#!/bin/bash
# Finds a tool the packaging checks need, installing its Debian package when
# it is missing, and prints its path. Nothing is skipped: a tool that cannot
# be had is a failure with the package to install.
#
#   packaging/need.sh CMD PKG            install PKG with apt-get (root only)
#   packaging/need.sh --extract CMD PKG  unpack PKG under out/tools instead of
#                                        installing it (no root needed, and
#                                        no service of PKG gets started:
#                                        used for promtool, whose package
#                                        would start a Prometheus server)
set -euo pipefail

extract=0
if [ "${1:-}" = --extract ]; then
	extract=1
	shift
fi
if [ $# -ne 2 ]; then
	echo "usage: $0 [--extract] CMD PKG" >&2
	exit 2
fi
cmd=$1 pkg=$2
# CMD may be a path to a file the package ships that is not a command (a
# shell library such as bash_completion): then it is found by existence.
found() {
	case $cmd in
	/*) [ -e "$cmd" ] && echo "$cmd" ;;
	*) command -v "$cmd" ;;
	esac
}
here=$(cd "$(dirname "$0")" && pwd)
tools=$(dirname "$here")/out/tools

if p=$(found); then
	echo "$p"
	exit 0
fi

apt_quiet() {
	DEBIAN_FRONTEND=noninteractive "$@" >/dev/null 2>&1
}

if [ $extract = 1 ]; then
	for dir in "$tools"/*/usr/bin "$tools"/*/usr/sbin; do
		if [ -x "$dir/$cmd" ]; then
			echo "$dir/$cmd"
			exit 0
		fi
	done
	mkdir -p "$tools/debs" "$tools/$pkg"
	(cd "$tools/debs" && { apt_quiet apt-get download "$pkg" ||
		{ [ "$(id -u)" = 0 ] && apt_quiet apt-get update && apt_quiet apt-get download "$pkg"; }; }) ||
		{ echo "FAIL: cannot download the Debian package $pkg for $cmd (apt-get download $pkg)" >&2; exit 1; }
	deb=$(ls -t "$tools/debs/${pkg}"_*.deb | head -n 1)
	dpkg-deb -x "$deb" "$tools/$pkg"
	for dir in "$tools/$pkg/usr/bin" "$tools/$pkg/usr/sbin"; do
		if [ -x "$dir/$cmd" ]; then
			echo "$dir/$cmd"
			exit 0
		fi
	done
	echo "FAIL: $pkg has no $cmd" >&2
	exit 1
fi

if [ "$(id -u)" != 0 ]; then
	echo "FAIL: $cmd is missing; run as root to install it, or apt-get install $pkg" >&2
	exit 1
fi
echo "installing $pkg (for $cmd)" >&2
apt_quiet apt-get install -y --no-install-recommends "$pkg" ||
	{ apt_quiet apt-get update && apt_quiet apt-get install -y --no-install-recommends "$pkg"; } ||
	{ echo "FAIL: cannot install $pkg" >&2; exit 1; }
found || { echo "FAIL: $pkg is installed but $cmd is still missing" >&2; exit 1; }
