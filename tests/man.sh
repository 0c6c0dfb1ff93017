#!/bin/sh
# The manual pages (man/*.3, man/*.1), run by `make test` after `make stage`:
#  1. `mandoc -Tlint -W warning` says nothing about any page, every
#     section 3 page has the sections NAME, LIBRARY, SYNOPSIS, DESCRIPTION,
#     RETURN VALUES, ERRORS, SEE ALSO, HISTORY and COMPATIBILITY, and every
#     section 1 page NAME, SYNOPSIS, DESCRIPTION, EXIT STATUS, SEE ALSO
#     and HISTORY; each section 1 page is installed in man1 and documents
#     the command that `--help` describes;
#  2. every API symbol libcaps.so exports, every inline function of the
#     installed headers and every function-like or lower-case macro
#     (curthread, mycpu) is a name (.Nm) of some page, every other macro
#     of the headers appears in some page, and no page names something
#     that does not exist;
#  3. every program of an EXAMPLES section compiles against the installed
#     headers with -Wall -Werror and runs to exit status 0 (with a private
#     LIBCAPS_DIR, so that CAPS examples need no /var/caps).
set -eu
cd "$(dirname "$0")/.."
stage=${LIBCAPS_STAGE:-$PWD/build/stage}
inc=$stage/usr/include/libcaps
lib=$stage/usr/lib
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
pages=$(ls man/*.3)
pages1=$(ls man/*.1)

# Exported symbols that have no page of their own:
#   __libcaps_mycpu, libcaps_mycpu_slow: the machinery of the mycpu macro
#     (lwkt_thread.3 says what they are; programs use mycpu).
internal="__libcaps_mycpu libcaps_mycpu_slow"
# Names pages list that are neither symbols nor header names: `libcaps`
# is the overview page.
extra="libcaps"

# ---- 1. mandoc -Tlint ------------------------------------------------------
if ! command -v mandoc >/dev/null 2>&1; then
	bad "mandoc is not installed (apt-get install mandoc)"
else
	lint=$(mandoc -Tlint -W warning $pages $pages1 2>&1 || true)
	if [ -z "$lint" ]; then
		ok "mandoc -Tlint -W warning: nothing on $(echo $pages $pages1 | wc -w) pages"
	else
		bad "mandoc -Tlint -W warning:"
		echo "$lint"
	fi
fi

# every page has the sections a reader looks for
missing=
for p in $pages; do
	for sec in NAME LIBRARY SYNOPSIS DESCRIPTION "RETURN VALUES" ERRORS "SEE ALSO" HISTORY \
	    COMPATIBILITY; do
		grep -q "^\.Sh $sec\$" "$p" || missing="$missing ${p##*/}:'$sec'"
	done
done
[ -z "$missing" ] && ok "every page has NAME ... COMPATIBILITY" || bad "sections missing:$missing"
missing=
for p in $pages1; do
	for sec in NAME SYNOPSIS DESCRIPTION "EXIT STATUS" "SEE ALSO" HISTORY; do
		grep -q "^\.Sh $sec\$" "$p" || missing="$missing ${p##*/}:'$sec'"
	done
done
[ -z "$missing" ] && ok "every section 1 page has NAME ... HISTORY" || bad "sections missing:$missing"

# each command's page is installed, and names every command its --help lists
for p in $pages1; do
	cmd=${p##*/}
	cmd=${cmd%.1}
	[ -f "$stage/usr/share/man/man1/$cmd.1" ] && ok "$cmd.1 installed in man1" ||
	    bad "$cmd.1 is not installed in $stage/usr/share/man/man1"
	if [ ! -x "$stage/usr/bin/$cmd" ]; then
		bad "$cmd is not installed in $stage/usr/bin"
		continue
	fi
	subs=$("$stage/usr/bin/$cmd" --help | sed -n 's/^  \([a-z][a-z]*\) .*/\1/p')
	undoc=
	for c in $subs; do grep -q "^\.Cm $c\( \|\$\)" "$p" || undoc="$undoc $c"; done
	[ -n "$subs" ] && [ -z "$undoc" ] && ok "$cmd.1 documents $(echo $subs | wc -w) commands of $cmd --help" ||
	    bad "$cmd.1 lacks commands of --help:$undoc (found: $subs)"
done

# ---- 2. every name has a page ------------------------------------------------
sh man/names.sh $pages | awk '{ print $2 }' | sort > "$tmp/nm_names"
dups=$(uniq -d "$tmp/nm_names")
[ -z "$dups" ] && ok "no name is listed by two pages" || bad "listed by two pages: $dups"

so=$lib/libcaps.so
if [ ! -f "$so" ]; then
	bad "no $so (run make stage first)"
else
	nm -D --defined-only "$so" | awk 'NF == 3 && $2 ~ /^[TDBRVW]$/ { sub(/@.*/, "", $3); print $3 }' |
	    sort -u > "$tmp/syms"
	for s in $internal; do sed -i "/^$s\$/d" "$tmp/syms"; done
	missing=$(comm -23 "$tmp/syms" "$tmp/nm_names" | tr '\n' ' ')
	[ -z "$missing" ] && ok "every API symbol of libcaps.so ($(wc -l < "$tmp/syms")) has a page" ||
	    bad "exported without a page (.Nm): $missing"
fi

headers=$(find "$inc" -name '*.h' | sort)
# static inline functions: the name on the line after "static __inline"
awk '/^static __inline/ { want = 1; next }
     want && /^[A-Za-z_][A-Za-z0-9_]*\(/ { sub(/\(.*/, ""); print; want = 0 }' $headers |
    grep -v '^_' | sort -u > "$tmp/inlines"
missing=$(comm -23 "$tmp/inlines" "$tmp/nm_names" | tr '\n' ' ')
[ -z "$missing" ] && ok "every inline function of the headers ($(wc -l < "$tmp/inlines")) has a page" ||
    bad "inline without a page (.Nm): $missing"

# macros: function-like or lower-case ones are API names; the rest are
# constants, which some page must mention.
sed -n 's/^#[[:space:]]*define[[:space:]]\{1,\}\([A-Za-z_][A-Za-z0-9_]*\)\(.\).*/\1 \2/p' $headers |
    grep -v '^_' | sort -u > "$tmp/macros"
awk '$2 == "(" || $1 ~ /[a-z]/ { print $1 }' "$tmp/macros" | sort -u > "$tmp/api_macros"
awk '!($2 == "(" || $1 ~ /[a-z]/) { print $1 }' "$tmp/macros" | sort -u > "$tmp/constants"
missing=$(comm -23 "$tmp/api_macros" "$tmp/nm_names" | tr '\n' ' ')
[ -z "$missing" ] && ok "every function-like or lower-case macro ($(wc -l < "$tmp/api_macros")) has a page" ||
    bad "macro without a page (.Nm): $missing"
cat $pages | tr -c 'A-Za-z0-9_' '\n' | sort -u > "$tmp/words"
missing=$(comm -23 "$tmp/constants" "$tmp/words" | tr '\n' ' ')
[ -z "$missing" ] && ok "every other macro of the headers ($(wc -l < "$tmp/constants")) is described" ||
    bad "macro no page mentions: $missing"

# no page names something that does not exist
sort -u "$tmp/syms" "$tmp/inlines" "$tmp/api_macros" "$tmp/constants" > "$tmp/known"
for s in $internal $extra; do echo "$s"; done >> "$tmp/known"
sort -u -o "$tmp/known" "$tmp/known"
unknown=$(comm -23 "$tmp/nm_names" "$tmp/known" | tr '\n' ' ')
[ -z "$unknown" ] && ok "every .Nm name exists" || bad "pages name what does not exist: $unknown"

# every cross reference to section 3 reaches one of our pages or names,
# or is one of these pages of the C library
libc3="abort assert dlopen exit malloc printf pthread_create queue sleep vsnprintf"
{ for p in $pages; do b=${p##*/}; echo "${b%.3}"; done; cat "$tmp/nm_names"
  for s in $libc3; do echo "$s"; done; } | sort -u > "$tmp/xr_ok"
sed -n 's/^\.Xr \([A-Za-z0-9_]*\) 3.*/\1/p' $pages $pages1 | sort -u > "$tmp/xr"
dangling=$(comm -23 "$tmp/xr" "$tmp/xr_ok" | tr '\n' ' ')
[ -z "$dangling" ] && ok "every .Xr NAME 3 reaches a page ($(wc -l < "$tmp/xr") names)" ||
    bad ".Xr to no page: $dangling"

# ---- 3. EXAMPLES compile and run -----------------------------------------------
n=0
for p in $pages; do
	base=${p##*/}
	base=${base%.3}
	# each .Bd -literal display of EXAMPLES is one program, except a
	# display right after a line "It prints", which is the output the
	# program before it must print; undo the mdoc escapes \& (zero
	# width) and \e (backslash)
	awk -v out="$tmp/ex-$base" '
		/^\.Sh / { inex = ($2 == "EXAMPLES"); next }
		inex && /^\.Bd -literal/ {
			f = (last ~ /^It prints/) ? out "-" k ".expected" : out "-" ++k ".c"
			inblk = 1; next
		}
		inblk && /^\.Ed/ { inblk = 0; close(f); next }
		inblk { print > f; next }
		{ last = $0 }
	' "$p"
	for src in "$tmp"/ex-"$base"-*.c; do
		[ -f "$src" ] || continue
		n=$((n + 1))
		sed -i -e 's/\\&//g' -e 's/\\e/\\/g' "$src"
		name=$(basename "$src" .c)
		name=${name#ex-}
		bin=${src%.c}
		if ! cc -Wall -Werror -o "$bin" "$src" -I"$inc" -L"$lib" -Wl,-rpath,"$lib" -lcaps \
		    > "$bin.cc" 2>&1; then
			bad "example $name does not compile:"
			cat "$bin.cc"
			continue
		fi
		mkdir -p "$tmp/caps-$name"
		st=0
		LIBCAPS_DIR="$tmp/caps-$name" timeout 60 "$bin" > "$bin.out" 2> "$bin.err" || st=$?
		if [ "$st" -ne 0 ]; then
			bad "example $name exited with status $st:"
			cat "$bin.out" "$bin.err"
		elif [ -f "$bin.expected" ]; then
			sed -i -e 's/\\&//g' -e 's/\\e/\\/g' "$bin.expected"
			if cmp -s "$bin.expected" "$bin.out"; then
				ok "example $name compiles, runs and prints what the page says"
			else
				bad "example $name prints other than the page says:"
				diff "$bin.expected" "$bin.out" || true
			fi
		else
			ok "example $name compiles and runs"
		fi
	done
done
[ "$n" -gt 0 ] && ok "$n example programs found" || bad "no example programs found"

echo "man: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
