#!/bin/sh
# The trace switch: LIBCAPS_DEBUG=1 makes the library say on stderr what it
# does (docs/debugging.md); without it, not a line. Run by `make test`
# (LIBCAPS_STAGE: the staged install tree).
set -u
. tests/common.sh
out=target/trace-tests
mkdir -p "$out"
has() {	# has LABEL FILE PATTERN (grep -E)
	if grep -Eq -- "$3" "$2"; then ok "$1"; else bad "$1: no /$3/ in:" "$2"; fi
}

inc=$stage/usr/include/libcaps
lib=$(cd "$stage/usr/lib" && pwd)
for p in caps_echo gdb_threads vcpu_mplock_wait; do
	cc -Wall -Werror -O1 -DSMP -I"$inc" -o "$out/$p" "c-tests/$p.c" -L"$lib" -Wl,-rpath,"$lib" -lcaps \
	    || { echo "FAIL: cannot build $p"; exit 1; }
done
export LIBCAPS_DIR="$tmp/rdv"
uid=$(id -u)
if [ "$uid" = 0 ]; then svcdir=$LIBCAPS_DIR/root; else svcdir=$LIBCAPS_DIR/users/$uid; fi

# Off: not one line.
timeout 60 "$out/caps_echo" -c nosuch -r 1 > /dev/null 2> "$tmp/off.err"
timeout 60 "$out/gdb_threads" > /dev/null 2>> "$tmp/off.err"
if grep -q '^libcaps\[' "$tmp/off.err"; then bad "trace lines without LIBCAPS_DEBUG"; else ok "silent without LIBCAPS_DEBUG"; fi
LIBCAPS_DEBUG=0 timeout 60 "$out/caps_echo" -c nosuch -r 1 > /dev/null 2> "$tmp/zero.err"
if grep -q '^libcaps\[' "$tmp/zero.err"; then bad "trace lines with LIBCAPS_DEBUG=0"; else ok "silent with LIBCAPS_DEBUG=0"; fi

export LIBCAPS_DEBUG=1
# A failing caps_client names the path it tried and the errno.
timeout 60 "$out/caps_echo" -c nosuch -r 1 > /dev/null 2> "$tmp/fail.err"
has "failed caps_client names the path and errno" "$tmp/fail.err" \
    "^libcaps\[[0-9]+\]: caps_client: cannot connect to $svcdir/nosuch: No such file or directory \(os error 2\)"
has "failed caps_client: the call and its errno" "$tmp/fail.err" \
    "^libcaps\[[0-9]+\]: caps_client: \"nosuch\" \(uid -1\) failed in $LIBCAPS_DIR: No such file"

# A service and a client: created, connected, accepted, dropped, removed.
timeout 60 "$out/caps_echo" -s tr -n 20 > /dev/null 2> "$tmp/srv.err" &
srv=$!
wait_service tr
timeout 60 "$out/caps_echo" -c tr -r 20 > /dev/null 2> "$tmp/cli.err"
wait $srv
has "service created" "$tmp/srv.err" "caps: service created: $svcdir/tr \(mode [0-7]+\)"
spid=$(sed -n 's/^libcaps\[\([0-9]*\)\]: caps: service created.*/\1/p' "$tmp/srv.err")
has "client connected, with the server's pid and uid" "$tmp/cli.err" \
    "caps_client: connected to $svcdir/tr \(server pid ${spid:-none}, uid $uid\)"
has "connection accepted, with the peer's pid and uid" "$tmp/srv.err" \
    "caps_service: tr: accepted a connection from pid [0-9]+ \(uid $uid\)"
has "connection dropped" "$tmp/srv.err" "caps_service: tr: connection from pid [0-9]+ \(uid $uid\) dropped"
has "service removed" "$tmp/srv.err" "caps: service removed: $svcdir/tr"
# Which transport each side says the connection uses: shared memory, or
# the socket when either side has LIBCAPS_SHM=0.
has "client: the connection is in shared memory" "$tmp/cli.err" \
    "caps_client: connected to $svcdir/tr \(server pid [0-9]+, uid $uid\): shared memory$"
has "service: the connection is in shared memory" "$tmp/srv.err" \
    "caps_service: tr: connection from pid [0-9]+: shared memory$"
timeout 60 "$out/caps_echo" -s tr -n 20 > /dev/null 2> "$tmp/srv0.err" &
srv=$!
wait_service tr
LIBCAPS_SHM=0 timeout 60 "$out/caps_echo" -c tr -r 20 > /dev/null 2> "$tmp/cli0.err"
wait $srv
has "client with LIBCAPS_SHM=0: the socket" "$tmp/cli0.err" "caps_client: connected to .*: socket$"
has "its service: the socket" "$tmp/srv0.err" "caps_service: tr: connection from pid [0-9]+: socket$"

# A virtual cpu started, a token wait and an MP-lock wait.
timeout 60 "$out/gdb_threads" > /dev/null 2> "$tmp/thr.err"
has "virtual cpu started" "$tmp/thr.err" "caps_fork_vcpu: cpu 1 started \(kernel thread [0-9]+\)"
# How thread stacks are laid out, said once as the thread package starts.
has "stack layout" "$tmp/thr.err" \
    "^libcaps\[[0-9]+\]: uthread_init: thread stacks: 64 KiB \+ 64 KiB guard, (slots of shared mappings, guard pages by madvise\(MADV_GUARD_INSTALL\)|one mapping each, guard by mprotect)"
n=$(grep -c 'thread stacks:' "$tmp/thr.err")
[ "$n" = 1 ] && ok "the stack layout: one line" || bad "the stack layout: $n lines" "$tmp/thr.err"
has "token wait" "$tmp/thr.err" \
    "lwkt_gettoken: thread 0x[0-9a-f]+ \"tokwaiter\" on cpu 1 waits for token 0x[0-9a-f]+ \(owned by cpu 0\)"
has "MP-lock wait" "$tmp/thr.err" \
    "get_mplock: thread 0x[0-9a-f]+ \"mpwaiter\" on cpu 1 waits for the MP lock \(held by cpu 0\)"
n=$(grep -c 'waits for the MP lock' "$tmp/thr.err")
[ "$n" = 1 ] && ok "the get_mplock wait: one line" || bad "the get_mplock wait: $n lines" "$tmp/thr.err"

# The scheduler's MP-lock wait: a newborn thread on cpu 1 waits for the
# lock main keeps on cpu 0 (main forgot rel_mplock()); one line.
timeout 60 "$out/vcpu_mplock_wait" > /dev/null 2> "$tmp/mpw.err"
has "newborn thread waits for the MP lock held by main" "$tmp/mpw.err" \
    "lwkt_switch: thread 0x[0-9a-f]+ \"newborn\" on cpu 1 waits for the MP lock \(held by cpu 0\)"
n=$(grep -c 'waits for the MP lock' "$tmp/mpw.err")
[ "$n" = 1 ] && ok "the newborn's wait: one line" || bad "the newborn's wait: $n lines" "$tmp/mpw.err"

summary trace
