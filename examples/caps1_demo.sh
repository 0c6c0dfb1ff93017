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
# Each reply must carry error 23 and the complemented number (caps1 checks
# both and exits 2 otherwise); every request must be answered.
status=0
echo "== client: 5 requests, every reply shown"
"$caps1" -c -n5 | tee "$dir/short.out" || status=1
echo "== client: $rounds requests, quiet"
"$caps1" -c -q -n"$rounds" | tee "$dir/long.out" || status=1
kill "$srv"
wait "$srv" 2>/dev/null || true
echo "== server stopped"
grep -q "^rate: 5 round trips" "$dir/short.out" || status=1
[ "$(grep -c '^reply: error=23/23 res=\([0-9]*\)/\1$' "$dir/short.out")" -eq 5 ] || status=1
grep -q "^rate: $rounds round trips" "$dir/long.out" || status=1
if [ "$status" -eq 0 ]; then
	echo "== demo OK: $((rounds + 5)) requests, every reply came back with error 23 and its number complemented"
else
	echo "== demo FAILED: a request went unanswered or a reply was wrong (see above)"
fi
exit "$status"
