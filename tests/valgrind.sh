#!/bin/sh
# C test programs under valgrind (memcheck): no invalid access, no
# uninitialised read, no definite or possible leak. Run by `make test`
# after the C tests built the programs into target/c-tests/, with the
# suppression file `make install` puts in share/libcaps/ (the TLS of the
# virtual cpus' kernel threads, docs/debugging.md).
set -u
. tests/common.sh
dir=target/c-tests
supp=$stage/usr/share/libcaps/libcaps.supp
if [ ! -f "$supp" ]; then
	echo "FAIL: no $supp (run make stage)"
	exit 1
fi
memcheck() {
	valgrind -q --leak-check=full --errors-for-leak-kinds=definite,possible \
	    --suppressions="$supp" "$@"
}
# A server in the background: `(memcheck_exec ...) &`, so that $! is
# valgrind itself (a function run with `&` is a subshell whose pid `kill`
# would hit, leaving valgrind and its program running).
memcheck_exec() {
	exec valgrind -q --leak-check=full --errors-for-leak-kinds=definite,possible \
	    --suppressions="$supp" "$@"
}
if ! command -v valgrind >/dev/null 2>&1; then
	echo "valgrind: skipped (valgrind is not installed)"
	exit 0
fi
vg() {	# vg EXPECTED-EXIT NAME ARGS...
	want=$1 name=$2
	shift 2
	if [ ! -x "$dir/$name" ]; then
		bad "$name: not built (run the C tests first)"
		return
	fi
	memcheck --error-exitcode=99 "$dir/$name" "$@" > /dev/null 2> "$tmp/$name.err" < /dev/null
	rc=$?
	if [ "$rc" = "$want" ]; then
		ok "$name"
	else
		bad "$name: exit $rc, wanted $want" "$tmp/$name.err"
	fi
}

vg 0 msgport
vg 1 thr1			# exit(1) after main is resumed, as the original
vg 0 thr_pingpong
vg 0 thr_wait
vg 0 thr_prio
vg 0 slab_basic
vg 3 vcpu_exit		# 31 virtual cpus still running at exit(3)

# caps_e | caps_d: the decoder under valgrind
if "$dir/caps_e" root daemon nobody > "$tmp/enc" 2>/dev/null; then
	memcheck --error-exitcode=99 "$dir/caps_d" < "$tmp/enc" > /dev/null 2> "$tmp/caps_d.err"
	rc=$?
	if [ $rc = 0 ]; then pass=$((pass + 1)); echo "ok   caps_d"; else
		fail=$((fail + 1)); echo "FAIL caps_d: exit $rc"; head -30 "$tmp/caps_d.err"; fi
fi

# a CAPS server and a threaded client, both under valgrind
export LIBCAPS_DIR="$tmp/rdv"
(memcheck_exec --error-exitcode=99 "$dir/caps_echo-ipc" -s vg -h 8 -n 1200) > /dev/null 2> "$tmp/server.err" &
srv=$!
wait_service vg
vg 0 caps_threads-ipc vg 100	# 8 threads x 100 = 800 requests
vg 0 caps_echo-ipc -c vg -r 400 -p 4 -z 1000
# a client closing its port inside its reply vector (its own service)
vg 0 caps_close_in_reply reply
vg 0 caps_close_in_reply dead
# another thread closing a client port its owner waits on
vg 0 caps_close_in_reply wait
vg 0 caps_close_in_reply waitany
vg 0 caps_close_in_reply service
wait $srv
rc=$?
if [ $rc = 0 ]; then pass=$((pass + 1)); echo "ok   caps_echo server"; else
	fail=$((fail + 1)); echo "FAIL caps_echo server: exit $rc"; head -30 "$tmp/server.err"; fi

# CAPS v2: caps_s in the background, caps_c for 1500 round trips (it
# forks at 1000; valgrind follows the child). caps_s runs until killed, so
# its errors are read from its log rather than its exit status.
(memcheck_exec "$dir/caps_s") > /dev/null 2> "$tmp/caps_s.err" &
srv=$!
i=0
while ! ls "$LIBCAPS_DIR"/sys/test,* > /dev/null 2>&1; do
	i=$((i + 1)); [ $i -lt 400 ] || break
	sleep 0.05
done
vg 0 caps_c 1500
kill "$srv"
wait "$srv" 2> /dev/null
if grep -q 'Invalid\|uninitialised\|definitely lost\|possibly lost' "$tmp/caps_s.err"; then
	fail=$((fail + 1)); echo "FAIL caps_s"; head -30 "$tmp/caps_s.err"
else
	pass=$((pass + 1)); echo "ok   caps_s"
fi

summary valgrind
