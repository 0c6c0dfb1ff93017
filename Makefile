# libcaps for Linux -- build, install and test.
#
#   make                      build libcaps.so.1.0.0, libcaps.a and capsctl
#                             (release)
#   make install PREFIX=/usr/local DESTDIR=
#                             install what `make` built (never builds);
#                             runs ldconfig when DESTDIR is empty
#   make uninstall            remove exactly what install put there
#                             (libraries, headers, pkg-config file, capsctl,
#                             man pages)
#   make test                 the whole test suite (the CAPS tests twice:
#                             shared memory on, then LIBCAPS_SHM=0)
#   make demo                 the caps1 demo (see README)
#   make bench                benchmarks (see BENCHMARKS.md)
#   make headers              refresh the committed cbindgen output

VERSION    := 1.0.0
MAJOR      := 1
PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
BINDIR     ?= $(PREFIX)/bin
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DOCDIR     ?= $(PREFIX)/share/doc/libcaps
LDCONFIG   ?= ldconfig
DATADIR    ?= $(PREFIX)/share
# The gdb extension, where gdb auto-loads it for the library (the objfile
# convention: the scripts directory + the library's real path + -gdb.py),
# and a copy to `source` by hand for static links.
GDBAUTODIR ?= $(DATADIR)/gdb/auto-load$(LIBDIR)
SHAREDIR   ?= $(DATADIR)/libcaps
# CAPS rendezvous directory (services live in root/ and users/UID/)
CAPSDIR    ?= /var/caps
DESTDIR    ?=
PROFILE    ?= release
CARGO      ?= cargo

ifeq ($(PROFILE),release)
CARGO_PROFILE := --release
else
CARGO_PROFILE :=
endif
TARGET_DIR := target/$(PROFILE)
OUT        := build/$(PROFILE)
STAGE      := $(CURDIR)/build/stage

# Headers, relative to include/, installed under $(INCLUDEDIR)/libcaps/.
HEADERS    := $(shell cd include && find . -name '*.h' | sed 's|^\./||' | sort)
HEADER_DIRS := $(shell cd include && find . -mindepth 1 -type d | sed 's|^\./||' | sort -r)

.PHONY: all lib capsctl install uninstall stage test check-install check-exports check-docs demo bench bench-caps bench-caps-sys doorbell-hostile \
	bench-threads bench-park bench-slab bench-encoding bench-vcpu headers clean

all: lib capsctl

# libcaps.a and libcaps.so both export exactly the symbols of libcaps.map
# (tools/link-lib.sh: one relocatable object, everything else local).
lib:
	$(CARGO) build $(CARGO_PROFILE) --locked -p libcaps --lib
	mkdir -p $(OUT)
	sh tools/link-lib.sh $(TARGET_DIR)/libcaps.a libcaps.map $(OUT) $(VERSION) $(MAJOR)

# The operator's tool (man/capsctl.1): lists and cleans CAPS services.
capsctl:
	$(CARGO) build $(CARGO_PROFILE) --locked -p libcaps --bin capsctl
	mkdir -p $(OUT)
	cp $(TARGET_DIR)/capsctl $(OUT)/capsctl

# install only copies what `make` built (so `sudo make install` never runs
# cargo as root); without the built files it stops.
BUILT      := $(OUT)/libcaps.so.$(VERSION) $(OUT)/libcaps.a $(OUT)/capsctl
$(BUILT):
	@echo "$@ is missing: run 'make' first (as yourself), then 'make install'" >&2; exit 1

install: $(BUILT)
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(INCLUDEDIR)/libcaps
	install -m 755 $(OUT)/libcaps.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libcaps.so.$(VERSION)
	ln -sfn libcaps.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libcaps.so.$(MAJOR)
	ln -sfn libcaps.so.$(MAJOR) $(DESTDIR)$(LIBDIR)/libcaps.so
	install -m 644 $(OUT)/libcaps.a $(DESTDIR)$(LIBDIR)/libcaps.a
	install -D -m 755 $(OUT)/capsctl $(DESTDIR)$(BINDIR)/capsctl
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	    libcaps.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/libcaps.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/libcaps.pc
	for h in $(HEADERS); do \
	    install -D -m 644 include/$$h $(DESTDIR)$(INCLUDEDIR)/libcaps/$$h || exit 1; \
	done
	install -D -m 644 LICENSE $(DESTDIR)$(DOCDIR)/LICENSE
	install -D -m 644 gdb/libcaps-gdb.py $(DESTDIR)$(GDBAUTODIR)/libcaps.so.$(VERSION)-gdb.py
	install -D -m 644 gdb/libcaps-gdb.py $(DESTDIR)$(SHAREDIR)/libcaps-gdb.py
	install -D -m 644 valgrind/libcaps.supp $(DESTDIR)$(SHAREDIR)/libcaps.supp
	install -d -m 755 $(DESTDIR)$(CAPSDIR) $(DESTDIR)$(CAPSDIR)/root
	install -d -m 1777 $(DESTDIR)$(CAPSDIR)/users $(DESTDIR)$(CAPSDIR)/sys
	$(if $(DESTDIR),,$(LDCONFIG))

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libcaps.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libcaps.so.$(MAJOR) \
	    $(DESTDIR)$(LIBDIR)/libcaps.so $(DESTDIR)$(LIBDIR)/libcaps.a \
	    $(DESTDIR)$(PKGCONFIGDIR)/libcaps.pc $(DESTDIR)$(BINDIR)/capsctl
	for h in $(HEADERS); do rm -f $(DESTDIR)$(INCLUDEDIR)/libcaps/$$h; done
	for d in $(HEADER_DIRS); do rmdir $(DESTDIR)$(INCLUDEDIR)/libcaps/$$d 2>/dev/null || true; done
	rmdir $(DESTDIR)$(INCLUDEDIR)/libcaps 2>/dev/null || true
	rm -f $(DESTDIR)$(GDBAUTODIR)/libcaps.so.$(VERSION)-gdb.py \
	    $(DESTDIR)$(SHAREDIR)/libcaps-gdb.py $(DESTDIR)$(SHAREDIR)/libcaps.supp
	rmdir $(DESTDIR)$(SHAREDIR) 2>/dev/null || true
	# the auto-load tree's empty directories, up to (not including) DATADIR
	d=$(DESTDIR)$(GDBAUTODIR); while [ "$$d" != "$(DESTDIR)$(DATADIR)" ] && rmdir "$$d" 2>/dev/null; do d=$${d%/*}; done
	rm -f $(DESTDIR)$(DOCDIR)/LICENSE
	rmdir $(DESTDIR)$(DOCDIR) $(DESTDIR)$(dir $(DOCDIR)) 2>/dev/null || true
	rmdir $(DESTDIR)$(PREFIX)/share 2>/dev/null || true
	# the rendezvous directories go only if no service lives there
	rmdir $(DESTDIR)$(CAPSDIR)/root $(DESTDIR)$(CAPSDIR)/users $(DESTDIR)$(CAPSDIR)/sys 2>/dev/null || true
	rmdir $(DESTDIR)$(CAPSDIR) 2>/dev/null || true

# ---- Manual pages (issue 15) ---------------------------------------------
# man/*.3 (mdoc(7), section 3) go to MANDIR/man3; every other name a page's
# NAME section lists (.Nm) becomes a symlink NAME.3 -> PAGE.3, so that
# `man lwkt_domsg` finds lwkt_msgport.3. man/names.sh prints the pairs.
# man/*.1 (the commands) go to MANDIR/man1.
MANDIR     ?= $(PREFIX)/share/man
MANPAGES   := $(sort $(wildcard man/*.3))
MANPAGES1  := $(sort $(wildcard man/*.1))

.PHONY: install-man uninstall-man
install: install-man
uninstall: uninstall-man

install-man:
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3
	for p in $(MANPAGES1); do install -m 644 $$p $(DESTDIR)$(MANDIR)/man1/ || exit 1; done
	for p in $(MANPAGES); do install -m 644 $$p $(DESTDIR)$(MANDIR)/man3/ || exit 1; done
	sh man/names.sh $(MANPAGES) | while read page name; do \
	    [ "$$name.3" = "$$page" ] || ln -sfn $$page $(DESTDIR)$(MANDIR)/man3/$$name.3 || exit 1; \
	done

uninstall-man:
	sh man/names.sh $(MANPAGES) | while read page name; do \
	    rm -f $(DESTDIR)$(MANDIR)/man3/$$name.3 $(DESTDIR)$(MANDIR)/man3/$$page; \
	done
	for p in $(MANPAGES1); do rm -f $(DESTDIR)$(MANDIR)/man1/$${p##*/}; done
	rmdir $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(MANDIR) 2>/dev/null || true
	rmdir $(DESTDIR)$(PREFIX)/share 2>/dev/null || true
# ---- end of manual pages ---------------------------------------------------

# Install into build/stage (PREFIX=/usr): what the C tests and the ABI test
# compile against.
stage: lib capsctl
	rm -rf $(STAGE)
	$(MAKE) install DESTDIR=$(STAGE) PREFIX=/usr

test: stage check-install check-exports check-docs
	LIBCAPS_STAGE=$(STAGE) sh tests/man.sh
	LIBCAPS_STAGE=$(STAGE) $(CARGO) test $(CARGO_PROFILE) --locked --workspace
	# The CAPS suite again with every connection on the socket.
	LIBCAPS_SHM=0 LIBCAPS_STAGE=$(STAGE) $(CARGO) test $(CARGO_PROFILE) --locked \
	    --test caps --test caps_sys --test caps_sys_dispose --test caps_sys_pipe --test caps_hostile --test dragonfly --test capsctl
	LIBCAPS_INCLUDE=$(STAGE)/usr/include/libcaps $(CARGO) run --locked -p abi-test
	LIBCAPS_STAGE=$(STAGE) sh tests/valgrind.sh
	LIBCAPS_STAGE=$(STAGE) sh tests/gdb.sh
	LIBCAPS_STAGE=$(STAGE) sh tests/trace.sh
	LIBCAPS_STAGE=$(STAGE) sh tests/sanitizers.sh

# The main job: build, install into build/stage, compile caps1 against the
# installed tree with pkg-config, run its server and client against a
# private rendezvous directory.
DEMO_ROUNDS ?= 100000
demo: stage
	PKG_CONFIG_PATH=$(STAGE)/usr/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$(STAGE) \
	    sh -c 'cc -Wall -Werror -O2 -o build/caps1 c-tests/caps1.c \
	    $$(pkg-config --cflags --libs libcaps) -Wl,-rpath,$(STAGE)/usr/lib'
	sh examples/caps1_demo.sh build/caps1 $(DEMO_ROUNDS)

# install/uninstall round trip: SONAME, links, pkg-config, nothing left.
check-install: lib capsctl
	sh tests/install_tree.sh

# What libcaps.so and libcaps.a export, against libcaps.map and the headers.
check-exports: stage
	sh tests/exports.sh $(STAGE)

# The docs against the tree; the demo ends with its verdict.
check-docs: stage
	sh tests/docs.sh
	$(MAKE) -s demo DEMO_ROUNDS=2000 > build/demo.out 2>&1 || { cat build/demo.out; exit 1; }
	tail -n 1 build/demo.out | grep '^== demo OK'

# Benchmarks (BENCHMARKS.md): built -O2 against the release library staged
# in build/stage; each prints its baselines from the same run.
# BENCH_SCALE shortens (0.2) or lengthens (5) the thread and slab runs;
# BENCH_REPS is the number of repetitions a slab figure is the median of;
# BENCH_ROUNDS the CAPS round trips. The peers measured against come from
# Debian packages (BENCH_PKGS_*): benches/deps.sh installs the missing ones
# when run as root and otherwise prints the apt-get line and stops. The
# tests never need them (.ci/run does not install them).
BENCH_PKGS_SLAB := libmimalloc2.0 libjemalloc2 libtcmalloc-minimal4
BENCH_PKGS_THREADS := libboost-context-dev
BENCH_CC = cc -O2 -Wall -Werror -DSMP -I$(STAGE)/usr/include/libcaps -L$(STAGE)/usr/lib \
	   -Wl,-rpath,$(STAGE)/usr/lib
BENCH_ROUNDS ?= 20000
# Seconds measured per row of the N-clients table (caps_scale), and how
# many times the whole table runs (2 or more: the median of the passes,
# each row's spread, the ratio of the largest N to the smallest).
BENCH_SCALE_SECONDS ?= 1
BENCH_SCALE_PASSES ?= 1
# Rounds of the interleaved 8-against-128 verdict (CAPS_SCALE_SLICE: every
# set of clients connected at once, taking turns in 100 ms slices).
BENCH_SCALE_ROUNDS ?= 40
BENCH_SCALE ?= 1
BENCH_REPS ?= 5
bench: bench-caps bench-caps-sys bench-threads bench-park bench-slab bench-encoding bench-vcpu

bench-caps: stage
	$(BENCH_CC) -o build/caps_bench benches/caps_bench.c -lcaps
	./build/caps_bench $(BENCH_ROUNDS)
	$(BENCH_CC) -o build/caps_scale benches/caps_scale.c -lcaps
	./build/caps_scale $(BENCH_SCALE_SECONDS) 128 1 $(BENCH_SCALE_PASSES)
	CAPS_SCALE_SLICE=100 CAPS_SCALE_NS=8,128 ./build/caps_scale 1 128 8 $(BENCH_SCALE_ROUNDS)
	$(BENCH_CC) -o build/caps_idle benches/caps_idle.c -lcaps
	./build/caps_idle
	$(BENCH_CC) -o build/doorbell_bench benches/doorbell_bench.c
	./build/doorbell_bench
	$(BENCH_CC) -o build/wake_batch benches/wake_batch.c
	./build/wake_batch

# Not a benchmark: what a hostile client can do to each doorbell of
# doorbell_bench (its userfaultfd cases need root or
# vm.unprivileged_userfaultfd=1, else they say "not here").
doorbell-hostile:
	@mkdir -p build
	$(BENCH_CC) -o build/doorbell_hostile benches/doorbell_hostile.c
	./build/doorbell_hostile

# CAPS v2: caps_sys_put + caps_sys_wait against caps_sys_wait +
# caps_sys_reply, beside a raw Unix-socket ping-pong; pipelined, beside
# CAPS v1 too (same payload and outstanding count, alternating runs).
bench-caps-sys: stage
	$(BENCH_CC) -o build/caps_sys_bench benches/caps_sys_bench.c -lcaps
	./build/caps_sys_bench $(BENCH_ROUNDS)
	$(BENCH_CC) -o build/caps_sys_idle benches/caps_sys_idle.c -lcaps
	./build/caps_sys_idle

# LWKT threads beside swapcontext, a bare switch and Boost.Context's
# fcontext in one process, then corosensei (a Rust example) right after,
# with ratios against the libcaps figures the first run wrote.
bench-threads: stage
	sh benches/deps.sh $(BENCH_PKGS_THREADS)
	$(BENCH_CC) -o build/ctxsw_bench benches/ctxsw_bench.c benches/fcontext_peer.c \
	    -lcaps -lboost_context
	./build/ctxsw_bench $(BENCH_SCALE) build/ctxsw_bench.results
	$(CARGO) run --release --locked -q --example bench_corosensei -- \
	    $(BENCH_SCALE) build/ctxsw_bench.results

# A million LWKT threads parked on their ports at once: VmRSS, KB per
# thread, lines of /proc/self/maps (BENCH_PARK threads; needs ~4.5 GB).
BENCH_PARK ?= 1000000
bench-park: stage
	$(BENCH_CC) -o build/park_bench benches/park_bench.c -lcaps
	./build/park_bench $(BENCH_PARK)

# glibc through __libc_malloc; mimalloc, jemalloc and tcmalloc dlopen()ed
# with RTLD_LOCAL, so none of them replaces the process's malloc.
bench-slab: stage
	sh benches/deps.sh $(BENCH_PKGS_SLAB)
	$(BENCH_CC) -o build/slab_bench benches/slab_bench.c -lcaps -ldl -lm -lpthread
	$(BENCH_CC) -o build/slab_ops benches/slab_ops.c -lcaps -ldl -lpthread
	./build/slab_bench $(BENCH_SCALE) $(BENCH_REPS)

bench-encoding:
	$(CARGO) run --release --locked --example bench_encoding

# Round trip between two virtual cpus, beside a spinning-flag floor and a
# pthread condvar ping-pong, BENCH_REPS repetitions with their p50, p99 and
# p99.9; crossbeam-channel bounded(1) (a Rust example) right after it, with
# the ratios against the figures the first run wrote.
bench-vcpu: stage
	$(BENCH_CC) -o build/vcpu_bench benches/vcpu_bench.c -lcaps -lpthread
	./build/vcpu_bench $(BENCH_SCALE) $(BENCH_REPS) build/vcpu_bench.results
	$(CARGO) run --release --locked -q --example bench_xbeam_pingpong -- \
	    $$(awk 'BEGIN { print int(200000 * $(BENCH_SCALE)) }') $(BENCH_REPS) \
	    build/vcpu_bench.results

headers:
	LIBCAPS_UPDATE_HEADERS=1 $(CARGO) build --locked -p libcaps --lib

clean:
	$(CARGO) clean
	rm -rf build
