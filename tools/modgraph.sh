#!/bin/sh
# The module edges of src/: one line "FROM TO" for every module FROM whose
# code names module TO (a `crate::` or `super::` path, a `use` group, or
# one of diag's macros), sorted and unique. Modules are the top-level
# ones (lwkt, cpu, ...), except that caps is split into its parts
# (caps::conn, caps::port, ...). Edges within one module are left out.
# With --table: the same edges as the Markdown table that
# docs/conventions.md shows (one row per module), which tests/docs.sh
# compares with the file's.
set -eu
cd "$(dirname "$0")/.."
if [ "${1:-}" = --table ]; then
	echo '| module | uses |'
	echo '|---|---|'
	sh "$0" | awk '
		$1 != cur { if (cur != "") print row " |"; cur = $1; row = "| `" $1 "` | `" $2 "`"; next }
		{ row = row ", `" $2 "`" }
		END { if (cur != "") print row " |" }'
	exit
fi
find src -name '*.rs' ! -path 'src/bin/*' | sort | perl -e '
use strict;
use warnings;
my %edge;
# The module a path (a list of names below the crate) belongs to.
sub module_of {
	my @p = @_;
	return undef unless @p;
	return "diag" if $p[0] =~ /^(fatal|warn|trace)$/;
	return "caps::$p[1]" if $p[0] eq "caps" && @p > 1 && $p[1] =~ /^[a-z_]+$/;
	return $p[0];
}
# Expand "a::b::{c, d::{e, f}}" into ("a::b::c", "a::b::d::e", ...).
sub expand {
	my ($s) = @_;
	$s =~ s/\s+//g;
	my $i = index($s, "{");
	return ($s) if $i < 0;
	my $head = substr($s, 0, $i);
	my $body = substr($s, $i + 1, length($s) - $i - 2);
	my (@items, $depth, $cur);
	($depth, $cur) = (0, "");
	for my $c (split //, $body) {
		$depth++ if $c eq "{";
		$depth-- if $c eq "}";
		if ($c eq "," && $depth == 0) { push @items, $cur; $cur = ""; next }
		$cur .= $c;
	}
	push @items, $cur if $cur ne "";
	return map { expand($head . $_) } grep { $_ ne "" } @items;
}
while (my $file = <STDIN>) {
	chomp $file;
	my @self = split m{/}, $file;
	shift @self;                        # src
	$self[-1] =~ s/\.rs$//;
	pop @self if $self[-1] eq "mod" || $self[-1] eq "lib";
	my $from = module_of(@self) // next;
	open my $fh, "<", $file or die "$file: $!";
	my $text = do { local $/; <$fh> };
	close $fh;
	$text =~ s{//[^\n]*}{}g;
	# A path: (crate|super)::names, possibly ending in a (nested) group.
	while ($text =~ /\b((?:\$?crate|super)(?:::(?:super|[A-Za-z_][A-Za-z0-9_]*))*::(?:\{(?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*\}|[A-Za-z_][A-Za-z0-9_]*))/g) {
		for my $path (expand($1)) {
			my @p = split /::/, $path;
			my @abs;
			if ($p[0] =~ /crate$/) {
				shift @p;
				@abs = @p;
			} else {
				my @base = @self;
				while (@p && $p[0] eq "super") { shift @p; pop @base }
				@abs = (@base, @p);
			}
			my $to = module_of(@abs) // next;
			next if $to eq $from;
			(my $ft = $from) =~ s/::.*//;
			(my $tt = $to) =~ s/::.*//;
			next if $ft eq $tt && $ft ne "caps";
			next if $ft eq "caps" && $tt eq "caps" && ($from eq "caps" || $to eq "caps");
			$edge{"$from $to"} = 1;
		}
	}
}
print "$_\n" for sort keys %edge;
'
