#!/bin/sh
# Print "PAGE NAME" for every name a manual page's NAME section lists
# (its .Nm lines before .Nd), PAGE being the page's file name. Used by
# `make install`/`make uninstall` (a link NAME.3 -> PAGE for each name
# other than the page's own) and by tests/man.sh.
for f in "$@"; do
	awk -v page="${f##*/}" '
		/^\.Sh / { inname = ($2 == "NAME"); next }
		/^\.Nd/ { inname = 0 }
		inname && /^\.Nm / { print page, $2 }
	' "$f"
done
