#!/bin/sh
# make install / make uninstall round trip into a scratch DESTDIR: the
# library carries SONAME libcaps.so.1, the links and pkg-config file are
# right, a program links with `pkg-config --cflags --libs libcaps`, and
# uninstall leaves no file behind.
set -eu
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

make -s install DESTDIR="$dest" PREFIX=/opt/caps >/dev/null
lib=$dest/opt/caps/lib
soname=$(readelf -d "$lib/libcaps.so.1.0.0" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = libcaps.so.1 ] && ok "SONAME $soname" || bad "SONAME is '$soname'"
[ "$(readlink "$lib/libcaps.so.1")" = libcaps.so.1.0.0 ] && ok "libcaps.so.1 link" || bad "libcaps.so.1 link"
[ "$(readlink "$lib/libcaps.so")" = libcaps.so.1 ] && ok "libcaps.so link" || bad "libcaps.so link"
[ -f "$lib/libcaps.a" ] && ok "libcaps.a" || bad "libcaps.a missing"
[ -f "$dest/opt/caps/include/libcaps/sys/msgport.h" ] && ok "headers under include/libcaps" || bad "headers"
gdbpy=$dest/opt/caps/share/gdb/auto-load/opt/caps/lib/libcaps.so.1.0.0-gdb.py
[ -f "$gdbpy" ] && grep -q 'lwkt-bt' "$gdbpy" && ok "gdb auto-load script beside the library's path" || bad "gdb script not at $gdbpy"
[ -f "$dest/opt/caps/share/libcaps/libcaps-gdb.py" ] && ok "gdb script for static links" || bad "share/libcaps/libcaps-gdb.py missing"
[ -f "$dest/opt/caps/share/libcaps/libcaps.supp" ] && ok "valgrind suppressions" || bad "share/libcaps/libcaps.supp missing"
[ "$(stat -c %a "$dest/var/caps/root")" = 755 ] && ok "var/caps/root 0755" || bad "var/caps/root mode"
[ "$(stat -c %a "$dest/var/caps/users")" = 1777 ] && ok "var/caps/users 1777" || bad "var/caps/users mode"
[ "$(stat -c %a "$dest/var/caps/sys")" = 1777 ] && ok "var/caps/sys 1777" || bad "var/caps/sys mode"

flags=$(PKG_CONFIG_PATH=$lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest pkg-config --cflags --libs libcaps)
case "$flags" in
*"-I$dest/opt/caps/include/libcaps"*"-lcaps"*) ok "pkg-config: $flags" ;;
*) bad "pkg-config gave '$flags'" ;;
esac
printf '#include <sys/types.h>\n#include <sys/msgport.h>\n#include <sys/msgport2.h>\nint main(void){struct lwkt_port p; lwkt_initport(&p, NULL); return lwkt_getport(&p) != NULL;}\n' > "$dest/t.c"
if cc -Wall -Werror -o "$dest/t" "$dest/t.c" $flags -Wl,-rpath,"$lib" && "$dest/t"; then
	ok "program links and runs against the installed tree"
else
	bad "program against the installed tree"
fi
rm -f "$dest/t" "$dest/t.c"

make -s uninstall DESTDIR="$dest" PREFIX=/opt/caps >/dev/null
left=$(find "$dest" ! -type d)
[ -z "$left" ] && ok "uninstall removed every file" || bad "uninstall left: $left"
[ ! -d "$dest/opt/caps/include/libcaps" ] && ok "uninstall removed include/libcaps" || bad "include/libcaps remains"
[ ! -d "$dest/opt/caps/share/gdb" ] && [ ! -d "$dest/opt/caps/share/libcaps" ] && ok "uninstall removed share/gdb and share/libcaps" || bad "share/gdb or share/libcaps remains"
[ ! -d "$dest/var/caps" ] && ok "uninstall removed the empty var/caps" || bad "var/caps remains"

echo "install: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
