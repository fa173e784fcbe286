#!/bin/bash
# Checks a built selfprotect .deb the way an administrator meets it:
#   lintian (errors and warnings fail; overrides carry their reasons),
#   dpkg install into a throwaway root: files, modes, conffiles, enablement,
#   the default policy validating, the MIB when the tree has one,
#   systemd-analyze verify on the installed unit and its offline exposure
#   score, every man page rendered by man -l without a warning,
#   the completions loaded and answering in bash, zsh and fish,
#   upgrade (a local policy edit survives), remove (state and policy stay,
#   the unit is masked) and purge (state, policy and enablement gone).
#
#   packaging/deb-check.sh DEB
#
# A missing tool is installed when we are root, and is a failure otherwise:
# nothing is skipped silently.
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 DEB" >&2
	exit 2
fi
deb=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
# Exposure above this fails the check: the README reports the score, and a
# change that weakens the sandbox must be a decision, not an accident.
MAX_EXPOSURE=${MAX_EXPOSURE:-2.5}

failures=0
fail() {
	echo "FAIL: $*" >&2
	failures=$((failures + 1))
}
pass() { echo "ok:   $*"; }

for tool in dpkg-deb:dpkg lintian:lintian systemd-analyze:systemd man:man-db zsh:zsh fish:fish file:file; do
	"$here/need.sh" "${tool%%:*}" "${tool#*:}" >/dev/null
done
# bash-completion is a library, not a command: cobra's bash script uses its
# helpers, as every interactive Debian shell has them.
"$here/need.sh" /usr/share/bash-completion/bash_completion bash-completion >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root

echo "== lintian"
# --fail-on: errors and warnings fail; info tags are shown, not fatal.
if lintian --fail-on error,warning --info "$deb" >"$work/lintian.txt" 2>&1; then
	pass "lintian (no error or warning)"
else
	fail "lintian:"
fi
grep -v 'running with root privileges' "$work/lintian.txt" || true

echo "== reproducible"
# The packaging step adds no time stamps or build paths: the package built
# again from its own binary is the same bytes.
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" ./usr/sbin/selfprotect
again=$("$here/build-deb.sh" "$work/usr/sbin/selfprotect" "$work/again")
cmp -s "$deb" "$again" && pass "rebuilt from its own binary: identical" || fail "rebuilding $deb from its binary gives different bytes"
rm -rf "$work/usr" "$work/again"

echo "== install into a throwaway root"
# The root is empty, so the package's dependency (procps, for the unit's
# ExecReload=/bin/kill) cannot be met here: the kernel suite's
# booted-systemd scenario installs it into a Debian root that has it.
dpkg_root() {
	dpkg --root="$root" --force-script-chrootless --force-depends --log=/dev/null "$@"
}
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/triggers"
touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"
# Chrootless: the maintainer scripts run here with DPKG_ROOT set, which is
# how they must skip systemctl yet record the enablement inside the root.
dpkg_root -i "$deb" >"$work/dpkg.txt" 2>&1 || { cat "$work/dpkg.txt"; fail "dpkg -i"; }
status=$(dpkg-query --root="$root" -W -f='${db:Status-Abbrev}' selfprotect 2>/dev/null || true)
[ "$status" = "ii " ] && pass "dpkg -i: selfprotect installed" || fail "dpkg status is '$status', want 'ii '"

check_file() { # path mode
	local p=$root$1 got
	if [ ! -e "$p" ]; then
		fail "missing $1"
		return
	fi
	got=$(stat -c '%a %U:%G' "$p")
	[ "$got" = "$2 root:root" ] && pass "$1 ($got)" || fail "$1 is $got, want $2 root:root"
}
check_file /usr/sbin/selfprotect 755
check_file /lib/systemd/system/selfprotect.service 644
check_file /etc/selfprotect/selfprotect.yaml 600
check_file /usr/share/doc/selfprotect/copyright 644
check_file /usr/share/doc/selfprotect/changelog.gz 644
check_file /usr/share/bash-completion/completions/selfprotect 644
check_file /usr/share/zsh/vendor-completions/_selfprotect 644
check_file /usr/share/fish/vendor_completions.d/selfprotect.fish 644
check_file /usr/share/selfprotect/prometheus/selfprotect-rules.yml 644
check_file /usr/share/selfprotect/grafana/selfprotect.json 644
if [ -f "$repo/mibs/SELFPROTECT-MIB.txt" ]; then
	check_file /usr/share/snmp/mibs/SELFPROTECT-MIB.txt 644
	cmp -s "$repo/mibs/SELFPROTECT-MIB.txt" "$root/usr/share/snmp/mibs/SELFPROTECT-MIB.txt" ||
		fail "the installed MIB differs from mibs/SELFPROTECT-MIB.txt"
else
	echo "note: mibs/SELFPROTECT-MIB.txt does not exist in this tree; the package has no MIB"
fi
bad_perm=$(find "$root" -path "$root/var/lib/dpkg" -prune -o \( -perm /022 ! -type l -print \))
[ -z "$bad_perm" ] && pass "nothing group- or world-writable" || fail "writable by others: $bad_perm"

file "$root/usr/sbin/selfprotect" | grep -q 'statically linked' && pass "binary is static" ||
	fail "binary is not statically linked: $(file "$root/usr/sbin/selfprotect")"

conffiles=$(dpkg-query --root="$root" -W -f='${Conffiles}\n' selfprotect | awk 'NF { print $1 }')
[ "$conffiles" = /etc/selfprotect/selfprotect.yaml ] && pass "conffiles: $conffiles" ||
	fail "conffiles are '$conffiles', want /etc/selfprotect/selfprotect.yaml"

wants=$root/etc/systemd/system/multi-user.target.wants/selfprotect.service
[ "$(readlink "$wants" 2>/dev/null)" = /lib/systemd/system/selfprotect.service ] && pass "postinst enabled the unit" ||
	fail "postinst did not enable the unit ($wants)"
grep -q 'Setting up selfprotect' "$work/dpkg.txt" || fail "postinst did not run"

bin=$root/usr/sbin/selfprotect
"$bin" check-config "$root/etc/selfprotect/selfprotect.yaml" >"$work/policy.txt" 2>&1 &&
	pass "the shipped policy validates" || { cat "$work/policy.txt"; fail "check-config on the shipped policy"; }
diff <("$bin" check-config | tail -n +2) <(tail -n +2 "$work/policy.txt") >/dev/null &&
	pass "the shipped policy is the built-in one" || fail "the shipped policy differs from the built-in policy"

echo "== man pages"
# The installed pages are exactly the ones the installed binary generates.
"$bin" gen-docs "$work/gen" >/dev/null
want=$(cd "$work/gen/man8" && ls | sed 's/$/.gz/' | sort)
got=$(cd "$root/usr/share/man/man8" && ls | sort)
[ "$want" = "$got" ] && pass "$(wc -w <<<"$got") man pages, one per command" || fail "man pages differ: want [$want] got [$got]"
for page in "$root"/usr/share/man/man8/*.8.gz; do
	# --warnings asks groff for every warning; any line on stderr fails.
	if ! out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null); then
		fail "man -l $(basename "$page") failed: $out"
	elif [ -n "$out" ]; then
		fail "man -l $(basename "$page") warns: $out"
	fi
done
LC_ALL=C.UTF-8 MANWIDTH=80 man -l "$root/usr/share/man/man8/selfprotect-run.8.gz" 2>/dev/null | grep -q -- '--metrics-listen' &&
	pass "selfprotect-run(8) renders its flags" || fail "selfprotect-run(8) does not render --metrics-listen"

echo "== systemd unit"
# verify resolves the unit's dependencies (sysinit.target, ...) and
# commands inside --root, so give the root the host's unit tree and kill;
# Documentation=man: pages are looked up through MANPATH, i.e. in the
# package. It prints problems and still exits 0, so any output fails.
mkdir -p "$root/usr/lib/systemd" "$root/bin"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
cp "$(type -P kill)" "$root/bin/kill"
unit=/lib/systemd/system/selfprotect.service
if out=$(MANPATH=$root/usr/share/man systemd-analyze verify --root="$root" "$root$unit" 2>&1) && [ -z "$out" ]; then
	pass "systemd-analyze verify"
else
	fail "systemd-analyze verify: $out"
fi
# A broken unit must fail the check above: prove it with a bad copy.

sed 's/^MemoryMax=.*/MemoryMax=lots/' "$root$unit" >"$root/lib/systemd/system/bad.service"
out=$(MANPATH=$root/usr/share/man systemd-analyze verify --root="$root" "$root/lib/systemd/system/bad.service" 2>&1 || true)
rm -f "$root/lib/systemd/system/bad.service"
[ -n "$out" ] && pass "verify reports a broken unit" || fail "systemd-analyze verify is silent on a broken unit"

# Offline scoring works without a running systemd.
score=$(MANPATH=$root/usr/share/man systemd-analyze security --offline=true --root="$root" "$unit" 2>/dev/null |
	sed -n 's/.*Overall exposure level for selfprotect.service: \([0-9.]*\).*/\1/p')
if [ -z "$score" ]; then
	fail "systemd-analyze security gave no exposure score"
elif awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }'; then
	pass "exposure $score (offline, systemd $(systemd-analyze --version | awk 'NR==1 {print $2}')), at most $MAX_EXPOSURE"
else
	fail "exposure $score is above $MAX_EXPOSURE"
fi
# The README reports the score; a unit change must update it.
readme_score=$(sed -n 's/^\*\*Exposure score: \([0-9.]*\) .*/\1/p' "$repo/README.md")
[ -n "$score" ] && [ "$readme_score" = "$score" ] && pass "README reports exposure $readme_score" ||
	fail "README says exposure '$readme_score', the unit scores '$score'"

echo "== shell completion"
export PATH=$root/usr/sbin:$PATH
words=$(bash -c '
	source /usr/share/bash-completion/bash_completion
	source "$1"
	COMP_WORDS=(selfprotect sta); COMP_CWORD=1; COMP_LINE="selfprotect sta"; COMP_POINT=${#COMP_LINE}
	__start_selfprotect
	printf "%s\n" "${COMPREPLY[@]}"' _ "$root/usr/share/bash-completion/completions/selfprotect" 2>/dev/null)
grep -qx status <<<"$words" && pass "bash completes 'selfprotect sta' to status" || fail "bash completion gave [$words]"
if zsh -f -c "fpath=($root/usr/share/zsh/vendor-completions \$fpath); autoload -Uz compinit && compinit -u -d $work/zcompdump; [[ \${_comps[selfprotect]} == _selfprotect ]] && autoload -Uz +X _selfprotect" >"$work/zsh.txt" 2>&1; then
	pass "zsh loads _selfprotect for selfprotect"
else
	fail "zsh completion: $(cat "$work/zsh.txt")"
fi
words=$(fish --no-config -c "source $root/usr/share/fish/vendor_completions.d/selfprotect.fish; complete -C'selfprotect sta'" 2>&1 || true)
grep -q '^status' <<<"$words" && pass "fish completes 'selfprotect sta' to status" || fail "fish completion gave [$words]"

echo "== upgrade, remove, purge"
echo "# local edit kept across upgrades" >>"$root/etc/selfprotect/selfprotect.yaml"
mkdir -p "$root/var/lib/selfprotect"
echo state >"$root/var/lib/selfprotect/selfprotect.db"
dpkg_root -i "$deb" >"$work/dpkg.txt" 2>&1 || { cat "$work/dpkg.txt"; fail "dpkg -i over an installed package"; }
tail -1 "$root/etc/selfprotect/selfprotect.yaml" | grep -q 'local edit' && pass "upgrade keeps the local policy edit" ||
	fail "upgrade replaced the edited policy"

dpkg_root -r selfprotect >"$work/dpkg.txt" 2>&1 || { cat "$work/dpkg.txt"; fail "dpkg -r"; }
[ ! -e "$root/usr/sbin/selfprotect" ] && pass "remove: binary gone" || fail "remove left the binary"
[ -f "$root/var/lib/selfprotect/selfprotect.db" ] && pass "remove: state kept" || fail "remove deleted the state"
[ -f "$root/etc/selfprotect/selfprotect.yaml" ] && pass "remove: policy kept" || fail "remove deleted the policy"
[ "$(readlink "$root/etc/systemd/system/selfprotect.service")" = /dev/null ] && pass "remove: unit masked" ||
	fail "remove did not mask the unit"

dpkg_root -P selfprotect >"$work/dpkg.txt" 2>&1 || { cat "$work/dpkg.txt"; fail "dpkg -P"; }
[ ! -e "$root/var/lib/selfprotect" ] && pass "purge: state deleted" || fail "purge left /var/lib/selfprotect"
[ ! -e "$root/etc/selfprotect/selfprotect.yaml" ] && pass "purge: policy deleted" || fail "purge left the policy"
[ ! -e "$wants" ] && [ ! -L "$root/etc/systemd/system/selfprotect.service" ] && pass "purge: enablement and mask gone" ||
	fail "purge left enablement or mask links"

if [ $failures -gt 0 ]; then
	echo "deb-check: $failures FAILED" >&2
	exit 1
fi
echo "deb-check: all passed ($(basename "$deb"))"
