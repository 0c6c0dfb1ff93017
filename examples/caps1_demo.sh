#!/bin/sh
# The caps1 demo: a CAPS server and client talking through a private
# rendezvous directory (LIBCAPS_DIR), no root needed.
#   caps1_demo.sh PATH-TO-caps1 ROUNDS
set -eu
caps1=$1 rounds=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/caps-demo.XXXXXX")
export LIBCAPS_DIR="$dir"
trap 'kill $srv 2>/dev/null || true; rm -rf "$dir"' EXIT

echo "== rendezvous directory $dir"
"$caps1" -s -q2 > "$dir/server.out" &
srv=$!
i=0
while [ ! -S "$dir/users/$(id -u)/test" ] && [ ! -S "$dir/root/test" ]; do
	i=$((i + 1)); [ $i -lt 200 ] || { echo "server did not start"; exit 1; }
	sleep 0.05
done
echo "== client: 5 requests, every reply shown"
"$caps1" -c -n5
echo "== client: $rounds requests, quiet"
"$caps1" -c -q -n"$rounds"
kill "$srv"
wait "$srv" 2>/dev/null || true
echo "== server stopped"
