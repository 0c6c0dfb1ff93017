#!/bin/sh
# Build the release library and run the thread benchmark (BENCHMARKS.md,
# "Threads"). Usage: benches/run-threads.sh [scale]   (run from the tree root)
set -e
cargo build --release --lib -q
ln -sf libcaps.so target/release/libcaps.so.1
cc -O2 -Wall -Werror -DSMP -I include benches/ctxsw_bench.c \
    -L target/release -lcaps -Wl,-rpath,"$PWD/target/release" \
    -o target/release/ctxsw_bench
echo "machine: $(uname -m), $(nproc) cpus"
target/release/ctxsw_bench "$@"
