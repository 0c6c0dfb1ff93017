# Sourced by the shell tests run by `make test` (tests/*.sh): the staged
# install tree, a scratch directory removed at exit, pass/fail counters.
stage=${LIBCAPS_STAGE:-build/stage}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
# bad LABEL [FILE]: a failure, with the start of FILE (a log) if given.
bad() {
	fail=$((fail + 1))
	echo "FAIL $1"
	if [ $# -gt 1 ]; then sed 's/^/     /' "$2" | head -40; fi
}
# summary NAME: the closing line; the exit status of the test.
summary() {
	echo "$1: $pass passed, $fail failed"
	[ "$fail" -eq 0 ]
}
# wait_service NAME: until CAPS v1 service NAME of this user exists in
# $LIBCAPS_DIR (20 s at most).
wait_service() {
	i=0
	while [ ! -S "$LIBCAPS_DIR/root/$1" ] && [ ! -S "$LIBCAPS_DIR/users/$(id -u)/$1" ]; do
		i=$((i + 1)); [ $i -lt 400 ] || break
		sleep 0.05
	done
}
