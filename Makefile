# libcaps for Linux -- build, install and test.
#
#   make                      build libcaps.so.1.0.0 and libcaps.a (release)
#   make install PREFIX=/usr/local DESTDIR=
#   make uninstall            remove exactly what install put there
#   make test                 the whole test suite
#   make demo                 the caps1 demo (see README)
#   make bench                benchmarks (see BENCHMARKS.md)
#   make headers              refresh the committed cbindgen output

VERSION    := 1.0.0
MAJOR      := 1
PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
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

.PHONY: all lib install uninstall stage test check-install demo bench headers clean

all: lib

lib:
	$(CARGO) build $(CARGO_PROFILE) --locked -p libcaps --lib
	mkdir -p $(OUT)
	cp -f $(TARGET_DIR)/libcaps.so $(OUT)/libcaps.so.$(VERSION)
	cp -f $(TARGET_DIR)/libcaps.a $(OUT)/libcaps.a
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	    libcaps.pc.in > $(OUT)/libcaps.pc

install: lib
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(INCLUDEDIR)/libcaps
	install -m 755 $(OUT)/libcaps.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libcaps.so.$(VERSION)
	ln -sfn libcaps.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libcaps.so.$(MAJOR)
	ln -sfn libcaps.so.$(MAJOR) $(DESTDIR)$(LIBDIR)/libcaps.so
	install -m 644 $(OUT)/libcaps.a $(DESTDIR)$(LIBDIR)/libcaps.a
	install -m 644 $(OUT)/libcaps.pc $(DESTDIR)$(PKGCONFIGDIR)/libcaps.pc
	for h in $(HEADERS); do \
	    install -D -m 644 include/$$h $(DESTDIR)$(INCLUDEDIR)/libcaps/$$h || exit 1; \
	done

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libcaps.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libcaps.so.$(MAJOR) \
	    $(DESTDIR)$(LIBDIR)/libcaps.so $(DESTDIR)$(LIBDIR)/libcaps.a \
	    $(DESTDIR)$(PKGCONFIGDIR)/libcaps.pc
	for h in $(HEADERS); do rm -f $(DESTDIR)$(INCLUDEDIR)/libcaps/$$h; done
	for d in $(HEADER_DIRS); do rmdir $(DESTDIR)$(INCLUDEDIR)/libcaps/$$d 2>/dev/null || true; done
	rmdir $(DESTDIR)$(INCLUDEDIR)/libcaps 2>/dev/null || true

# Install into build/stage (PREFIX=/usr): what the C tests and the ABI test
# compile against.
stage:
	rm -rf $(STAGE)
	$(MAKE) install DESTDIR=$(STAGE) PREFIX=/usr

test: stage check-install
	LIBCAPS_STAGE=$(STAGE) $(CARGO) test $(CARGO_PROFILE) --locked --workspace
	LIBCAPS_INCLUDE=$(STAGE)/usr/include/libcaps $(CARGO) run --locked -p abi-test

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
check-install: lib
	sh tests/install_tree.sh

# Benchmarks: built -O2 against the release library staged in build/stage.
# BENCH_SCALE shortens (0.2) or lengthens (5) every run; BENCH_REPS is
# the number of repetitions each figure is the median of. Needs
# libmimalloc-dev for the side-by-side comparison.
BENCH_SCALE ?= 1
BENCH_REPS ?= 5
bench: stage
	cc -O2 -Wall -Werror -o build/slab_bench benches/slab_bench.c \
	    -I$(STAGE)/usr/include/libcaps -L$(STAGE)/usr/lib -lcaps -lmimalloc -lpthread \
	    -Wl,-rpath,$(STAGE)/usr/lib
	./build/slab_bench $(BENCH_SCALE) $(BENCH_REPS)

headers:
	LIBCAPS_UPDATE_HEADERS=1 $(CARGO) build --locked -p libcaps --lib

clean:
	$(CARGO) clean
	rm -rf build
