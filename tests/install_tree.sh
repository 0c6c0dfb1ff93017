#!/bin/sh
# make install / make uninstall round trip into a scratch DESTDIR: the
# library carries SONAME libcaps.so.1, the links, the pkg-config file and
# the license are right, capsctl is in bin, a program links with `pkg-config --cflags --libs
# libcaps`, the manual pages and their links are there, and uninstall
# leaves no file behind. Also: install never builds (it asks for `make`
# first), and runs ldconfig only when it installs into the live system
# (empty DESTDIR).
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
cmp -s LICENSE "$dest/opt/caps/share/doc/libcaps/LICENSE" && ok "share/doc/libcaps/LICENSE" ||
	bad "the license is not installed under share/doc/libcaps"

# manual pages: every page, and a link for every name a page lists
man3=$dest/opt/caps/share/man/man3
pages=$(ls man/*.3)
missing=
for p in $pages; do [ -f "$man3/${p##*/}" ] || missing="$missing ${p##*/}"; done
[ -z "$missing" ] && ok "$(echo $pages | wc -w) manual pages in share/man/man3" || bad "pages missing:$missing"
nnames=0 badlinks=
for name in $(sh man/names.sh $pages | awk '{ print $2 }'); do
	nnames=$((nnames + 1))
	[ -f "$man3/$name.3" ] || badlinks="$badlinks $name"
done
[ -z "$badlinks" ] && ok "$nnames names (.Nm) reach their page" || bad "names without a page:$badlinks"
[ -x "$dest/opt/caps/bin/capsctl" ] && "$dest/opt/caps/bin/capsctl" --help | grep -q '^  list' &&
    ok "bin/capsctl runs (--help)" || bad "bin/capsctl missing or its --help fails"
man1=$dest/opt/caps/share/man/man1
missing=
for p in man/*.1; do [ -f "$man1/${p##*/}" ] || missing="$missing ${p##*/}"; done
[ -z "$missing" ] && ok "$(ls man/*.1 | wc -l) section 1 page(s) in share/man/man1" || bad "man1 pages missing:$missing"
if command -v man >/dev/null 2>&1; then
	found=$(MANPATH=$dest/opt/caps/share/man man -w lwkt_domsg 2>/dev/null || true)
	[ "$found" = "$man3/lwkt_msgport.3" ] && ok "MANPATH=... man -w lwkt_domsg: lwkt_msgport.3" ||
	    bad "man -w lwkt_domsg gave '$found'"
fi
if command -v mandoc >/dev/null 2>&1; then
	mandoc -Tascii "$man3/caps_sys_wait.3" 2>/dev/null | grep -q '^CAPS_SYS_GET(3)' &&
	    ok "caps_sys_wait.3 renders as CAPS_SYS_GET(3)" || bad "caps_sys_wait.3 does not render"
fi

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
[ ! -d "$dest/opt/caps/share" ] && ok "uninstall removed share/ (man pages, doc/libcaps)" ||
	bad "share/ remains"

# ldconfig: run by an install into the live system (DESTDIR empty; here a
# scratch PREFIX and CAPSDIR and a stand-in ldconfig), not into a DESTDIR.
stub=$dest/ldconfig-stub
printf '#!/bin/sh\necho "$@" > "%s/ldconfig.ran"\n' "$dest" > "$stub"
chmod +x "$stub"
make -s install DESTDIR="$dest" PREFIX=/opt/caps LDCONFIG="$stub" >/dev/null
[ ! -e "$dest/ldconfig.ran" ] && ok "no ldconfig for an install into DESTDIR" ||
	bad "ldconfig ran for an install into DESTDIR"
make -s uninstall DESTDIR="$dest" PREFIX=/opt/caps >/dev/null
make -s install DESTDIR= PREFIX="$dest/live" CAPSDIR="$dest/live/var/caps" LDCONFIG="$stub" >/dev/null
[ -e "$dest/ldconfig.ran" ] && ok "ldconfig ran for an install into the live system" ||
	bad "no ldconfig after an install with an empty DESTDIR"
make -s uninstall DESTDIR= PREFIX="$dest/live" CAPSDIR="$dest/live/var/caps" >/dev/null

# install does not build: with the built files missing it stops and says
# to run make first, and never starts cargo.
out=$(make install DESTDIR="$dest/nobuild" PREFIX=/opt/caps OUT="$dest/not-built" 2>&1) &&
	bad "install succeeded without built files" || true
case "$out" in
*"run 'make' first"*) ok "install without built files asks for make" ;;
*) bad "install without built files said: $out" ;;
esac
case "$out" in
*cargo*|*Compiling*) bad "install started a build: $out" ;;
*) ok "install started no build" ;;
esac
[ -z "$(find "$dest/nobuild" ! -type d 2>/dev/null)" ] && ok "nothing installed without built files" ||
	bad "files installed without built files"

echo "install: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
