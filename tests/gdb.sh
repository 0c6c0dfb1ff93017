#!/bin/sh
# The gdb extension (gdb/libcaps-gdb.py) on c-tests/gdb_threads.c: three
# named LWKT threads blocked in a port wait, a token and the MP lock.
# Run by `make test` (LIBCAPS_STAGE: the staged install tree). The program
# is built without -g: the types come from the library's own debug info.
#   1. shared library, the script auto-loaded from its installed name;
#   2. libcaps.a, the script loaded by hand with `source`.
# Each run checks `info lwkt-threads` (names and states), that each
# thread's `lwkt-bt` contains the function it blocked in and no unknown
# frame, and that the program's registers are the same before and after
# `lwkt-bt all`.
set -u
if ! command -v gdb >/dev/null 2>&1; then
	echo "gdb: skipped (gdb is not installed; .ci/run installs it)"
	exit 0
fi
. tests/common.sh
out=target/gdb-tests
mkdir -p "$out"

inc=$stage/usr/include/libcaps
lib=$(cd "$stage/usr/lib" && pwd)
cc -Wall -Werror -O1 -DSMP -I"$inc" -o "$out/gdb_threads" c-tests/gdb_threads.c \
    -L"$lib" -Wl,-rpath,"$lib" -lcaps || { echo "FAIL: cannot build gdb_threads"; exit 1; }
cc -Wall -Werror -O1 -DSMP -I"$inc" -o "$out/gdb_threads-static" c-tests/gdb_threads.c \
    "$lib/libcaps.a" -lpthread -ldl -lm || { echo "FAIL: cannot build gdb_threads-static"; exit 1; }

# Without gdb the program runs through.
if [ "$(timeout 60 "$out/gdb_threads")" = done ]; then ok "gdb_threads runs alone"; else bad "gdb_threads alone"; fi

regs='info registers rip rsp rbp rbx r12 r13 r14 r15'
# run_gdb LOG PROGRAM GDB-OPTIONS...
run_gdb() {
	log=$1 prog=$2
	shift 2
	timeout 120 gdb -batch -nx "$@" -ex 'break all_blocked' -ex run \
	    -ex 'echo REGS-BEFORE\n' -ex "$regs" -ex 'info lwkt-threads' -ex 'lwkt-bt all' \
	    -ex 'echo REGS-AFTER\n' -ex "$regs" -ex 'echo PLAIN-BT\n' -ex 'thread 2' -ex bt \
	    -ex kill "$prog" > "$log" 2>&1
}

# section LOG NAME: the lwkt-bt output for thread NAME
section() {
	awk -v n="\"$2\"" '/^LWKT thread /{on = index($0, n) > 0} on' "$1"
}

check() {	# check LABEL LOG
	label=$1 log=$2
	row() { grep -E "^[0-9]+ +0x[0-9a-f]+ +$1 " "$log"; }
	row main | grep -q 'running' && ok "$label: main running" || bad "$label: main not listed as running"
	row portwaiter | grep -q 'blocked: waits for a message on its own port' \
	    && ok "$label: portwaiter blocked on its port" || bad "$label: portwaiter state"
	row tokwaiter | grep -Eq '^1 .*blocked: waits for token 0x[0-9a-f]+ \(owned by cpu 0\)' \
	    && ok "$label: tokwaiter on cpu 1 blocked on a token of cpu 0" || bad "$label: tokwaiter state"
	row mpwaiter | grep -Eq '^1 .*runnable: waits for the MP lock \(held by cpu 0\)' \
	    && ok "$label: mpwaiter waits for the MP lock" || bad "$label: mpwaiter state"
	[ "$(grep -c '^[01] .* idle ' "$log")" = 2 ] && ok "$label: one idle thread per cpu" || bad "$label: idle threads"
	section "$log" portwaiter | grep -q 'waitport' && section "$log" portwaiter | grep -q 'in portwaiter' \
	    && ok "$label: portwaiter backtrace reaches the port wait" || bad "$label: portwaiter backtrace"
	section "$log" tokwaiter | grep -q 'lwkt_gettoken' && section "$log" tokwaiter | grep -q 'in tokwaiter' \
	    && ok "$label: tokwaiter backtrace reaches lwkt_gettoken" || bad "$label: tokwaiter backtrace"
	section "$log" mpwaiter | grep -q 'mplock' && section "$log" mpwaiter | grep -q 'in mpwaiter' \
	    && ok "$label: mpwaiter backtrace reaches the MP lock wait" || bad "$label: mpwaiter backtrace"
	section "$log" main | grep -q 'all_blocked' && ok "$label: main's backtrace is its kernel thread's" \
	    || bad "$label: main backtrace"
	# Every frame unwound is a known function: the blocking entry
	# points' gate (src/lwkt/arch.rs) tells the unwinder where its
	# caller's return address is.
	! grep -Eq '^#[0-9]+ .* in \?\? \(' "$log" && ok "$label: no unknown frame in the backtraces" \
	    || bad "$label: a backtrace has an unknown frame"
	# A thread's backtrace ends at its first frame, the trampoline that
	# entered thread_start, with nothing (no `?? ()`) above it; so does
	# gdb's own `bt` in a kernel thread running an LWKT thread (cpu 1's
	# idle thread).
	for t in portwaiter tokwaiter mpwaiter; do
		section "$log" "$t" | sed -n '/^PLAIN-BT/q;p' | grep -E '^#[0-9]+ ' | tail -n 2 | tr '\n' ' ' \
		    | grep -q 'lwkt::thread::thread_start.*lwkt::arch::imp::trampoline[^#]*$' \
		    && ok "$label: $t backtrace ends at the trampoline" || bad "$label: $t backtrace end"
	done
	sed -n '/^PLAIN-BT/,$p' "$log" | grep -E '^#[0-9]+ ' | tail -n 2 | tr '\n' ' ' \
	    | grep -q 'lwkt::thread::thread_start.*lwkt::arch::imp::trampoline[^#]*$' \
	    && ok "$label: gdb's bt in an LWKT thread ends at the trampoline" || bad "$label: plain bt end"
	before=$(grep -A8 '^REGS-BEFORE' "$log" | grep -E '^r[a-z0-9]+ ')
	after=$(grep -A8 '^REGS-AFTER' "$log" | grep -E '^r[a-z0-9]+ ')
	[ -n "$before" ] && [ "$before" = "$after" ] && ok "$label: registers unchanged by lwkt-bt all" \
	    || bad "$label: registers changed: [$before] -> [$after]"
	if [ "$fail" -gt 0 ]; then sed 's/^/     /' "$log" | head -80; fi
}

# 1. auto-load: the installed script under a scripts directory, at the
# library's real path, as gdb looks for it.
real=$(readlink -f "$lib/libcaps.so.1.0.0")
auto=$tmp/auto
mkdir -p "$auto$(dirname "$real")"
cp "$stage/usr/share/gdb/auto-load/usr/lib/libcaps.so.1.0.0-gdb.py" "$auto$real-gdb.py"
run_gdb "$tmp/dyn.log" "$out/gdb_threads" -iex "set auto-load scripts-directory $auto" \
    -iex "set auto-load safe-path $auto"
check "auto-load" "$tmp/dyn.log"
cp "$tmp/dyn.log" "$out/gdb_threads.log"

# 2. static link, the script sourced by hand.
run_gdb "$tmp/static.log" "$out/gdb_threads-static" \
    -ex "source $stage/usr/share/libcaps/libcaps-gdb.py"
check "static" "$tmp/static.log"

summary gdb
