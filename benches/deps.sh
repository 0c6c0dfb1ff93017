#!/bin/sh
# benches/deps.sh PACKAGE... -- make sure the Debian packages a benchmark
# needs are there (the peers it measures against: allocators, Boost).
# Run as root, it installs the missing ones with apt-get; run as anyone
# else, it prints the apt-get line and fails. The tests never need these,
# so .ci/run does not install them: only the bench targets call this.
set -u
if ! command -v dpkg-query >/dev/null 2>&1; then
	echo "benches/deps.sh: no dpkg here; the benchmark needs the equivalents of: $*" >&2
	exit 0
fi
missing=
for pkg in "$@"; do
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)
	[ "$status" = "install ok installed" ] || missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "benches/deps.sh: installing$missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	# shellcheck disable=SC2086 # one word per package
	apt-get install -y -qq $missing >/dev/null ||
		{ apt-get update -qq && apt-get install -y -qq $missing >/dev/null; } || exit 1
	exit 0
fi
echo "benches/deps.sh: the benchmark needs$missing; install them with" >&2
echo "  sudo apt-get install$missing" >&2
exit 1
