//! Property test: decode(encode(x)) == x for random values of a schema with
//! every scalar type, nested structures, arrays of integers, strings and
//! structures, strings with every byte value and integers at their limits.
//! Goes through the C entry points (`caps_encode`, `caps_decode`,
//! `caps_struct_free_pointers`).
//!
//! `LIBCAPS_PROP_ITERS` sets the number of cases (default 20,000).

mod encoding_common;

use core::ffi::{CStr, c_char, c_void};
use std::ffi::CString;

use ::caps::capi::caps_struct::{caps_decode, caps_encode, caps_struct_free_pointers};
use encoding_common::*;

fn iters(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn cstr(p: *const c_char) -> Option<Vec<u8>> {
    // SAFETY: test strings are NUL-terminated (ours or decoded ones).
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_bytes().to_vec())
}

fn text<const N: usize>(b: &[u8; N]) -> &[u8] {
    &b[..b.iter().position(|&c| c == 0).unwrap_or(N)]
}

fn assert_inner_eq(a: &Inner, b: &Inner, ctx: &str) {
    assert_eq!((a.a, a.b), (b.a, b.b), "{ctx}");
    assert_eq!(cstr(a.s), cstr(b.s), "{ctx}");
    assert_eq!(text(&a.buf), text(&b.buf), "{ctx}");
    assert_eq!(a.op, b.op, "{ctx}");
    assert_eq!(b.c, 0, "{ctx}: field outside the schema was written");
}

fn assert_outer_eq(a: &Outer, b: &Outer, ctx: &str) {
    assert_eq!(
        (a.i8s, a.i16s, a.i32s, a.i64s),
        (b.i8s, b.i16s, b.i32s, b.i64s),
        "{ctx}"
    );
    assert_eq!(
        (a.u8s, a.u16s, a.u32s, a.u64s),
        (b.u8s, b.u16s, b.u32s, b.u64s),
        "{ctx}"
    );
    assert_eq!(cstr(a.name), cstr(b.name), "{ctx}");
    assert_inner_eq(&a.inner, &b.inner, ctx);
    for i in 0..3 {
        assert_inner_eq(&a.inners[i], &b.inners[i], ctx);
    }
    assert_eq!(a.ints, b.ints, "{ctx}");
    for i in 0..4 {
        assert_eq!(cstr(a.strs[i]), cstr(b.strs[i]), "{ctx}");
    }
    assert_eq!(a.opaque, b.opaque, "{ctx}");
    assert_eq!(text(&a.strbuf), text(&b.strbuf), "{ctx}");
}

/// Encode with a buffer of exactly the needed size, decode, compare.
fn roundtrip(v: &mut Outer) {
    // SAFETY: OUTER describes Outer; a NULL buffer of 0 bytes asks for the length.
    let need = unsafe { caps_encode(core::ptr::null_mut(), 0, (v as *mut Outer).cast(), &OUTER.0) };
    let mut buf = vec![0u8; need as usize];
    // SAFETY: `buf` has `need` bytes.
    let n = unsafe {
        caps_encode(
            buf.as_mut_ptr().cast(),
            need,
            (v as *mut Outer).cast(),
            &OUTER.0,
        )
    };
    assert_eq!(n, need);
    let ctx = String::from_utf8_lossy(&buf).into_owned();
    assert!(buf.iter().all(|c| c.is_ascii_graphic()), "{ctx}");
    let mut back = zeroed_outer();
    let mut error = -1;
    // SAFETY: `buf` holds `n` bytes; OUTER describes Outer.
    let used = unsafe {
        caps_decode(
            buf.as_ptr().cast(),
            n,
            (&raw mut back).cast::<c_void>(),
            &OUTER.0,
            &mut error,
        )
    };
    assert_eq!((used, error), (n, 0), "{ctx}");
    assert_outer_eq(v, &back, &ctx);
    // SAFETY: the strings were allocated by caps_decode.
    unsafe { caps_struct_free_pointers((&raw mut back).cast(), &OUTER.0) };
    for s in string_slots(&mut back) {
        // SAFETY: `s` points into `back`.
        assert!(unsafe { *s }.is_null());
    }
}

#[test]
fn every_byte_value_and_every_limit() {
    let all: Vec<u8> = (1..=255).collect();
    let all_c = CString::new(all.clone()).unwrap();
    let mut rng = Rng(1);
    let mut keep = Vec::new();
    let mut v = random_outer(&mut rng, &mut keep);
    v.name = all_c.as_ptr() as *mut c_char;
    v.opaque = core::array::from_fn(|i| (i * 8) as u8 ^ 0xff);
    v.i8s = i8::MIN;
    v.i64s = i64::MIN;
    v.u64s = u64::MAX;
    roundtrip(&mut v);
    for chunk in all.chunks(23) {
        let mut b = [0u8; 24];
        b[..chunk.len()].copy_from_slice(chunk);
        v.strbuf = b;
        roundtrip(&mut v);
    }
}

#[test]
fn random_structures_roundtrip() {
    let n = iters("LIBCAPS_PROP_ITERS", 20_000);
    let seed = iters("LIBCAPS_SEED", 0x5eed) as u64;
    let mut rng = Rng(seed);
    for _ in 0..n {
        let mut keep = Vec::new();
        let mut v = random_outer(&mut rng, &mut keep);
        roundtrip(&mut v);
    }
}
