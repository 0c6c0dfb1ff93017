//! ABI test: the C headers against the Rust definitions (see build.rs).
#![allow(warnings)]
#![allow(bad_style, unused, improper_ctypes, clippy::all)]

extern crate caps;

include!(concat!(env!("OUT_DIR"), "/decls.rs"));
include!(concat!(env!("OUT_DIR"), "/all.rs"));
