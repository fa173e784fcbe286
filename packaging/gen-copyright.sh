#!/bin/bash
# Writes the package's machine-readable copyright file: the header for
# selfprotect itself, then one paragraph per Go module linked into BIN (and
# the Go runtime), with the license text from the module cache. The list
# comes from the binary's own build information, so a new dependency cannot
# ship without its license; a license this script cannot classify stops the
# build.
#
#   packaging/gen-copyright.sh BIN HEADER > copyright
set -euo pipefail

bin=$1 header=$2
modcache=$(go env GOMODCACHE)
goroot=$(go env GOROOT)

# Module paths are stored case-encoded in the cache: "!x" for "X".
cache_dir() {
	local enc
	enc=$(printf '%s' "$1" | sed 's/[A-Z]/!\L&/g')
	printf '%s/%s@%s' "$modcache" "$enc" "$2"
}

license_file() {
	local f
	for f in "$1"/LICENSE "$1"/LICENSE.txt "$1"/LICENSE.md "$1"/COPYING "$1"/LICENCE; do
		if [ -f "$f" ]; then
			printf '%s' "$f"
			return 0
		fi
	done
	return 1
}

# classify prints the DEP-5 short name for a license text.
classify() {
	local f=$1 apache=0 mit=0 bsd=0
	grep -q 'Apache License' "$f" && apache=1
	grep -q 'Permission is hereby granted, free of charge' "$f" && mit=1
	grep -q 'Redistribution and use in source and binary forms' "$f" && bsd=1
	if [ $apache = 1 ] && [ $mit = 1 ]; then
		echo "Expat and Apache-2.0"
	elif [ $apache = 1 ]; then
		echo "Apache-2.0"
	elif [ $mit = 1 ]; then
		echo "Expat"
	elif [ $bsd = 1 ] && grep -qiE 'Neither the name|names of (its|the) contributors' "$f"; then
		echo "BSD-3-clause"
	elif [ $bsd = 1 ]; then
		echo "BSD-2-clause"
	else
		return 1
	fi
}

# indent turns text into a DEP-5 continuation block.
indent() {
	sed -e 's/[[:space:]]*$//' -e 's/^$/./' -e 's/^/ /'
}

copyrights() {
	local lines
	lines=$(grep -E '^[[:space:]>]*Copyright' "$1" | sed -e 's/^[[:space:]>]*Copyright[[:space:]]*\((c)\|©\|(C)\)\?[[:space:]]*//' | grep -v '^$' | sort -u || true)
	if [ -z "$lines" ]; then
		lines="the $2 authors"
	fi
	printf '%s\n' "$lines" | sed '2,$s/^/ /'
}

paragraph() { # name version dir
	local name=$1 version=$2 dir=$3 lic short
	lic=$(license_file "$dir") || { echo "gen-copyright: no license file for $name $version in $dir" >&2; exit 1; }
	short=$(classify "$lic") || { echo "gen-copyright: cannot tell the license of $name $version ($lic)" >&2; exit 1; }
	printf '\nFiles: vendor/%s/*\n' "$name"
	printf 'Copyright: %s\n' "$(copyrights "$lic" "$name")"
	if [ "$short" = Apache-2.0 ]; then
		# The full text is in /usr/share/common-licenses; the NOTICE file,
		# which the license requires to travel with the binary, goes here.
		printf 'License: Apache-2.0\n'
		printf 'Comment: %s %s\n' "$name" "$version"
		if [ -f "$dir/NOTICE" ]; then
			printf ' .\n NOTICE:\n'
			indent <"$dir/NOTICE"
		fi
	else
		printf 'License: %s\n' "$short"
		indent <"$lic"
		printf 'Comment: %s %s\n' "$name" "$version"
	fi
}

cat "$header"

buildinfo=$(go version -m "$bin")
gover=$(awk 'NR == 1 { print $2 }' <<<"$buildinfo")
paragraph "go-runtime-and-standard-library" "$gover" "$goroot"

deps=$(awk '$1 == "dep" { print $2, $3 } $1 == "=>" { print "replaced", $2, $3 }' <<<"$buildinfo")
if [ -z "$deps" ]; then
	echo "gen-copyright: $bin carries no module list (built without module information?)" >&2
	exit 1
fi
while read -r name version; do
	if [ "$name" = replaced ]; then
		echo "gen-copyright: replaced modules are not handled" >&2
		exit 1
	fi
	dir=$(cache_dir "$name" "$version")
	[ -d "$dir" ] || { echo "gen-copyright: $name $version is not in the module cache ($dir); run go mod download" >&2; exit 1; }
	paragraph "$name" "$version" "$dir"
done <<<"$deps"

cat <<'EOF'

License: Apache-2.0
 Licensed under the Apache License, Version 2.0 (the "License"); you may
 not use this file except in compliance with the License.
 .
 On Debian systems, the complete text of the Apache License, Version 2.0
 can be found in /usr/share/common-licenses/Apache-2.0.
EOF
