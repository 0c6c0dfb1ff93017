#!/bin/sh
# Make libcaps.a and libcaps.so.VERSION from cargo's static library, so
# that both export exactly the symbols of libcaps.map:
#
#   1. `ld -r` joins every member of cargo's archive (libcaps, the crates
#      it uses, the Rust standard library, the C shim) into one
#      relocatable object, libcaps.o;
#   2. `objcopy` makes every global symbol of it local except those of
#      libcaps.map, renames the COMDAT groups (so another Rust library's
#      copy of a group cannot replace ours and leave our references
#      pointing at a local symbol), and drops the LLVM bitcode sections,
#      which are meaningless once joined (binutils' LLVM plugin aborts on
#      them);
#   3. libcaps.a is that one object; libcaps.so is linked from it with
#      libcaps.map as version script (version node LIBCAPS_1.0).
#
#   tools/link-lib.sh CARGO-ARCHIVE MAP OUTDIR VERSION MAJOR
set -eu
archive=$1 map=$2 out=$3 version=$4 major=$5
cc=${CC:-cc}
work=$out/link.tmp
rm -rf "$work"
mkdir -p "$work"

# The global: names of the version script, one per line.
sed -n '/global:/,/local:/p' "$map" |
	sed -n 's/^[[:space:]]*\([A-Za-z_][A-Za-z0-9_]*\);.*/\1/p' > "$work/keep"

ld -r -o "$work/whole.o" --whole-archive "$archive"

renames=$(readelf -gW "$work/whole.o" |
	sed -n 's/^COMDAT group section .*\[\(.*\)\] contains.*/--redefine-sym \1=libcaps.\1/p')
# shellcheck disable=SC2086 # one word per option
objcopy --remove-section=.llvmbc --remove-section=.llvmcmd $renames \
	--keep-global-symbols="$work/keep" "$work/whole.o" "$work/libcaps.o"

# Every listed symbol must be defined: a name in the list that the code
# no longer has would otherwise just be missing from libcaps.a.
readelf -sW "$work/libcaps.o" |
	awk '($5 == "GLOBAL" || $5 == "WEAK") && $7 != "UND" { print $8 }' | sort > "$work/defined"
missing=$(sort "$work/keep" | comm -23 - "$work/defined")
if [ -n "$missing" ]; then
	echo "link-lib: listed in $map but not defined by the library:" $missing >&2
	exit 1
fi

rm -f "$out/libcaps.a"
ar rcD "$out/libcaps.a" "$work/libcaps.o"

# The C libraries are those rustc names for a static library
# (--print native-static-libs).
"$cc" -shared -o "$out/libcaps.so.$version" "$work/libcaps.o" \
	-Wl,-soname,"libcaps.so.$major" -Wl,--version-script="$map" \
	-Wl,--gc-sections -Wl,--as-needed -Wl,-z,defs -Wl,-z,relro,-z,now -Wl,-z,noexecstack \
	-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
rm -rf "$work"
