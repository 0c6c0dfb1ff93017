#!/bin/sh
# C programs built with -fsanitize=address and -fsanitize=thread against
# the (uninstrumented) library: correct programs run clean, real bugs are
# still reported (src/san.rs, src/lwkt/san.rs, docs/debugging.md). Run by
# `make test` (LIBCAPS_STAGE: the staged install tree).
set -u
. tests/common.sh
out=target/san-tests
mkdir -p "$out"
inc=$stage/usr/include/libcaps
lib=$(cd "$stage/usr/lib" && pwd)
build() {	# build NAME SRC SANITIZER
	cc -Wall -Werror -O1 -g -fsanitize="$3" -DSMP -I"$inc" -o "$out/$1" "c-tests/$2.c" \
	    -L"$lib" -Wl,-rpath,"$lib" -lcaps 2> "$tmp/cc.err"
}
# expect LABEL WANT-EXIT WANT-STDOUT GREP-MUST GREP-MUST-NOT CMD...
expect() {
	label=$1 want=$2 stdout=$3 must=$4 mustnot=$5
	shift 5
	timeout 300 "$@" > "$tmp/out" 2> "$tmp/err"
	rc=$?
	cat "$tmp/out" >> "$tmp/err"
	if [ "$want" = nonzero ]; then [ $rc -ne 0 ]; else [ $rc -eq "$want" ]; fi || {
		bad "$label: exit $rc, wanted $want" "$tmp/err"; return; }
	[ -z "$stdout" ] || grep -q "^$stdout\$" "$tmp/out" || { bad "$label: no '$stdout'" "$tmp/err"; return; }
	[ -z "$must" ] || grep -Eq "$must" "$tmp/err" || { bad "$label: no /$must/" "$tmp/err"; return; }
	[ -z "$mustnot" ] || ! grep -Eq "$mustnot" "$tmp/err" || { bad "$label: /$mustnot/ seen" "$tmp/err"; return; }
	ok "$label"
}

# AddressSanitizer
if build san_stacks-asan san_stacks address; then
	a="$out/san_stacks-asan"
	expect "asan: lwkt_exit from nested frames, stacks reused" 0 "exit ok" "" \
	    "AddressSanitizer|__asan_handle_no_return" "$a" exit
	ASAN_OPTIONS=detect_stack_use_after_return=1 expect "asan: the same with fake stacks" 0 "exit ok" "" \
	    "AddressSanitizer|__asan_handle_no_return" "$a" exit
	expect "asan: a real stack-buffer overflow in an LWKT thread is reported" nonzero "" \
	    "ERROR: AddressSanitizer: stack-buffer-overflow.*" "__asan_handle_no_return" "$a" overflow
	grep -q 'in overflow .*san_stacks.c' "$tmp/err" && ok "asan: the report names the function" \
	    || bad "asan: report without the function" "$tmp/err"
	# ASan's DWARF unwinder reaches the thread's first frames (with
	# fewer than three it falls back to walking rbp, which an -O1
	# function uses as it likes).
	grep -q 'in caps::lwkt::thread::thread_start' "$tmp/err" && ok "asan: the report reaches thread_start" \
	    || bad "asan: report stops short of thread_start" "$tmp/err"
	# LeakSanitizer runs at exit: a virtual cpu's kernel thread, and a
	# thread blocked with the only pointer to a block, are no leaks.
	expect "asan: a virtual cpu and a blocked thread holding memory: no leak" 0 "vcpu ok" "" \
	    "LeakSanitizer|AddressSanitizer" "$a" vcpu
	expect "asan: a real leak in an LWKT thread is reported" nonzero "" \
	    "ERROR: LeakSanitizer: detected memory leaks" "" "$a" leak
	grep -Eq 'Direct leak of [0-9]+ byte\(s\) in (99[0-9]|1000) object' "$tmp/err" \
	    && ok "asan: the leak report counts the lost blocks" \
	    || bad "asan: leak report without the lost blocks" "$tmp/err"
	# lwkt_domsg handing the cpu straight to a server of its cpu switches
	# outside lwkt_switch: ASan must be told of that switch too.
	if build msg_handoff-asan msg_handoff address; then
		ASAN_OPTIONS=detect_stack_use_after_return=1 expect \
		    "asan: same-cpu lwkt_domsg handed straight to the server, fake stacks" 0 \
		    "failures 0" "" "AddressSanitizer|ERROR" "$out/msg_handoff-asan"
	else
		bad "asan: msg_handoff does not build" "$tmp/cc.err"
	fi
else
	echo "asan: skipped (cc cannot build with -fsanitize=address: $(head -1 "$tmp/cc.err"); .ci/run installs libasan8)"
fi

# ThreadSanitizer
if build san_pingpong-tsan san_pingpong thread && build caps_threads-tsan caps_threads thread &&
	build caps_xcpu-tsan caps_xcpu thread &&
    cc -Wall -Werror -O1 -DSMP -I"$inc" -o "$out/caps_echo" c-tests/caps_echo.c -L"$lib" \
    -Wl,-rpath,"$lib" -lcaps; then
	t="$out/san_pingpong-tsan"
	expect "tsan: two-cpu ping-pong, IPIs, token hand-over: no race" 0 "pingpong ok" "" \
	    "ThreadSanitizer" "$t"
	expect "tsan: a real race between two cpus' threads is reported" nonzero "race done" \
	    "WARNING: ThreadSanitizer: data race" "" "$t" race
	grep -q "global 'racy'" "$tmp/err" && ok "tsan: the report names the variable" \
	    || bad "tsan: report without the variable" "$tmp/err"
	export LIBCAPS_DIR="$tmp/rdv"
	timeout 120 "$out/caps_echo" -s tsan -n 800 > /dev/null 2>&1 &
	srv=$!
	wait_service tsan
	expect "tsan: CAPS client with 8 threads: no race" 0 "" "workers left 0" "ThreadSanitizer" \
	    "$out/caps_threads-tsan" tsan 100
	wait $srv
	timeout 120 "$out/caps_echo" -s tsanx > /dev/null 2>&1 &
	srv=$!
	wait_service tsanx
	expect "tsan: one CAPS client port used from two cpus: no race" 0 "done" "" \
	    "ThreadSanitizer|[1-9][0-9]* (EXDEV|bad)" "$out/caps_xcpu-tsan" tsanx 200
	kill $srv
	wait $srv 2> /dev/null
else
	echo "tsan: skipped (cc cannot build with -fsanitize=thread: $(head -1 "$tmp/cc.err"); .ci/run installs libtsan2)"
fi

summary sanitizers
