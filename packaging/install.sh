#!/bin/bash
# Lays out an installed selfprotect under $DESTDIR: the one place that says
# which file goes where, used by `make install` and by the Debian package
# build (packaging/build-deb.sh), so the two cannot disagree.
#
#   packaging/install.sh BIN GENDIR
#
# BIN is the static binary, GENDIR the output of `selfprotect gen-docs`.
# Directories come from the environment (GNU-style names, `make install`
# passes them through):
#   DESTDIR     staging root (default: empty, the live system)
#   PREFIX      /usr/local
#   SBINDIR     $PREFIX/sbin
#   DATADIR     $PREFIX/share
#   MANDIR      $DATADIR/man
#   SYSCONFDIR  /etc when PREFIX is /usr or /usr/local, else $PREFIX/etc
#   UNITDIR     /lib/systemd/system for PREFIX=/usr (Debian 12), else
#               $PREFIX/lib/systemd/system (systemd searches /usr/local/lib too)
#   CONFIG      keep (default): never replace an existing policy file, write
#               the new default beside it as selfprotect.yaml.dist;
#               replace: always write it (the package build: dpkg handles
#               conffiles itself)
set -euo pipefail

if [ $# -ne 2 ]; then
	echo "usage: $0 BIN GENDIR" >&2
	exit 2
fi
bin=$1 gen=$2
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
SBINDIR=${SBINDIR:-$PREFIX/sbin}
DATADIR=${DATADIR:-$PREFIX/share}
MANDIR=${MANDIR:-$DATADIR/man}
CONFIG=${CONFIG:-keep}
case $PREFIX in
/usr | /usr/local) SYSCONFDIR=${SYSCONFDIR:-/etc} ;;
*) SYSCONFDIR=${SYSCONFDIR:-$PREFIX/etc} ;;
esac
if [ "$PREFIX" = /usr ]; then
	UNITDIR=${UNITDIR:-/lib/systemd/system}
else
	UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
fi

for f in "$bin" "$gen/man8/selfprotect.8" "$gen/selfprotect.yaml" "$gen/completion/selfprotect.bash"; do
	[ -e "$f" ] || { echo "$0: missing $f (run make build and selfprotect gen-docs first)" >&2; exit 1; }
done

d=$DESTDIR
install -d -m 0755 "$d$SBINDIR" "$d$UNITDIR" "$d$MANDIR/man8" "$d$SYSCONFDIR/selfprotect" \
	"$d$DATADIR/bash-completion/completions" "$d$DATADIR/zsh/vendor-completions" \
	"$d$DATADIR/fish/vendor_completions.d" "$d$DATADIR/selfprotect/prometheus" \
	"$d$DATADIR/selfprotect/grafana"

install -m 0755 "$bin" "$d$SBINDIR/selfprotect"

# The unit names /usr/sbin/selfprotect; point it at where the binary went.
sed "s|^ExecStart=/usr/sbin/selfprotect |ExecStart=$SBINDIR/selfprotect |" \
	"$here/selfprotect.service" >"$d$UNITDIR/selfprotect.service"
chmod 0644 "$d$UNITDIR/selfprotect.service"
grep -q "^ExecStart=$SBINDIR/selfprotect run" "$d$UNITDIR/selfprotect.service" ||
	{ echo "$0: could not point ExecStart at $SBINDIR" >&2; exit 1; }

# Root-only: the same file holds the alerts: section, with SMTP passwords,
# SNMP communities and webhook tokens.
conf=$d$SYSCONFDIR/selfprotect/selfprotect.yaml
if [ "$CONFIG" = keep ] && [ -e "$conf" ]; then
	install -m 0600 "$gen/selfprotect.yaml" "$conf.dist"
	echo "kept $conf; the current default policy is in $conf.dist"
else
	install -m 0600 "$gen/selfprotect.yaml" "$conf"
fi

# Man pages compressed the Debian way: -n keeps the build reproducible.
for page in "$gen"/man8/*.8; do
	gzip -9n <"$page" >"$d$MANDIR/man8/$(basename "$page").gz"
	chmod 0644 "$d$MANDIR/man8/$(basename "$page").gz"
done

install -m 0644 "$gen/completion/selfprotect.bash" "$d$DATADIR/bash-completion/completions/selfprotect"
install -m 0644 "$gen/completion/_selfprotect" "$d$DATADIR/zsh/vendor-completions/_selfprotect"
install -m 0644 "$gen/completion/selfprotect.fish" "$d$DATADIR/fish/vendor_completions.d/selfprotect.fish"

# Fleet files: alerting rules and the dashboard, for the monitoring hosts.
install -m 0644 "$here/prometheus/selfprotect-rules.yml" "$d$DATADIR/selfprotect/prometheus/"
install -m 0644 "$here/grafana/selfprotect.json" "$d$DATADIR/selfprotect/grafana/"

# The SNMP MIB is written alongside the SNMP notifier; ship it once it exists.
if [ -f "$repo/mibs/SELFPROTECT-MIB.txt" ]; then
	install -d -m 0755 "$d$DATADIR/snmp/mibs"
	install -m 0644 "$repo/mibs/SELFPROTECT-MIB.txt" "$d$DATADIR/snmp/mibs/SELFPROTECT-MIB.txt"
fi
