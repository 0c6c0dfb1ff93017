//! Shared by the encoding property and fuzz tests: a small PRNG and a rich
//! schema (every scalar type, nested structures, arrays of integers, of
//! strings and of structures).
#![allow(dead_code)]

use core::ffi::{c_char, c_int};
use core::mem::{offset_of, size_of};
use std::ffi::CString;

use ::caps::abi::*;
use ::caps::encoding::schema::{END, Shared, label};

/// splitmix64: small, fast, good enough to drive tests; seeded explicitly
/// so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// An integer of `bits` bits, often at a limit.
    pub fn int(&mut self, bits: u32, signed: bool) -> i128 {
        let (min, max): (i128, i128) = if signed {
            (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
        } else {
            (0, (1i128 << bits) - 1)
        };
        match self.below(8) {
            0 => min,
            1 => max,
            2 => 0,
            3 => -1i128.max(min),
            4 => min + 1,
            5 => max - 1,
            _ => min + (self.next() as i128).rem_euclid(max - min + 1),
        }
    }
    /// Bytes drawn from 1..=255 (`nul` false) or 0..=255.
    pub fn bytes(&mut self, max_len: usize, nul: bool) -> Vec<u8> {
        let n = self.below(max_len + 1);
        (0..n)
            .map(|_| {
                let b = self.next() as u8;
                if nul || b != 0 { b } else { 1 }
            })
            .collect()
    }
}

pub const BUF: usize = 12;
pub const OPQ: usize = 6;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Inner {
    pub a: i8,
    pub b: u16,
    pub s: *mut c_char,
    pub buf: [u8; BUF],
    pub op: [u8; OPQ],
    pub c: i64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Outer {
    pub i8s: i8,
    pub i16s: i16,
    pub i32s: i32,
    pub i64s: i64,
    pub u8s: u8,
    pub u16s: u16,
    pub u32s: u32,
    pub u64s: u64,
    pub name: *mut c_char,
    pub inner: Inner,
    pub inners: [Inner; 3],
    pub ints: [i32; 5],
    pub strs: [*mut c_char; 4],
    pub opaque: [u8; 32],
    pub strbuf: [u8; 24],
}

pub static INNER_LABELS: Shared<[caps_label; 6]> = Shared([
    label(offset_of!(Inner, a), CAPS_OP_INT_T, 1, 1),
    label(offset_of!(Inner, b), CAPS_OP_UINT_T, 2, 2),
    label(offset_of!(Inner, s), CAPS_OP_STRPTR_T, 0, 3),
    label(offset_of!(Inner, buf), CAPS_OP_STRBUF_T, BUF, 4),
    label(offset_of!(Inner, op), CAPS_OP_OPAQUE_T, OPQ, 5),
    END,
]);
// `c` is deliberately left out of the schema (fid 6 unknown to it): it
// must come back as zero.
pub static INNER: Shared<caps_struct> = Shared(caps_struct {
    name: c"inner".as_ptr() as *mut c_char,
    labels: INNER_LABELS.0.as_ptr(),
});

const fn with(l: caps_label, nary: c_int, csinfo: caps_struct_t) -> caps_label {
    caps_label { nary, csinfo, ..l }
}

pub static OUTER_LABELS: Shared<[caps_label; 16]> = Shared([
    label(offset_of!(Outer, i8s), CAPS_OP_INT_T, 1, 1),
    label(offset_of!(Outer, i16s), CAPS_OP_INT_T, 2, 2),
    label(offset_of!(Outer, i32s), CAPS_OP_INT_T, 4, 3),
    label(offset_of!(Outer, i64s), CAPS_OP_INT_T, 8, 4),
    label(offset_of!(Outer, u8s), CAPS_OP_UINT_T, 1, 5),
    label(offset_of!(Outer, u16s), CAPS_OP_UINT_T, 2, 6),
    label(offset_of!(Outer, u32s), CAPS_OP_UINT_T, 4, 7),
    label(offset_of!(Outer, u64s), CAPS_OP_UINT_T, 8, 8),
    label(offset_of!(Outer, name), CAPS_OP_STRPTR_T, 0, 9),
    with(
        label(offset_of!(Outer, inner), 0, size_of::<Inner>(), 10),
        0,
        &INNER.0,
    ),
    with(
        label(offset_of!(Outer, inners), 0, size_of::<Inner>(), 11),
        3,
        &INNER.0,
    ),
    with(
        label(offset_of!(Outer, ints), CAPS_OP_INT_T, 4, 12),
        5,
        core::ptr::null(),
    ),
    with(
        label(offset_of!(Outer, strs), CAPS_OP_STRPTR_T, 0, 13),
        4,
        core::ptr::null(),
    ),
    label(offset_of!(Outer, opaque), CAPS_OP_OPAQUE_T, 32, 14),
    label(offset_of!(Outer, strbuf), CAPS_OP_STRBUF_T, 24, 0x1f),
    END,
]);
pub static OUTER: Shared<caps_struct> = Shared(caps_struct {
    name: c"outer".as_ptr() as *mut c_char,
    labels: OUTER_LABELS.0.as_ptr(),
});

pub fn zeroed_outer() -> Outer {
    // SAFETY: all-zero is a valid Outer (integers, NULL pointers, bytes).
    unsafe { core::mem::zeroed() }
}

/// Every `char *` field of an Outer.
pub fn string_slots(o: &mut Outer) -> Vec<*mut *mut c_char> {
    let mut v: Vec<*mut *mut c_char> = vec![&raw mut o.name, &raw mut o.inner.s];
    for i in &mut o.inners {
        v.push(&raw mut i.s);
    }
    for s in &mut o.strs {
        v.push(s);
    }
    v
}

/// A random string for a `char *` field (NULL one time in six).
pub fn strptr(rng: &mut Rng, keep: &mut Vec<CString>) -> *mut c_char {
    if rng.below(6) == 0 {
        return core::ptr::null_mut();
    }
    let s = CString::new(rng.bytes(40, false)).unwrap();
    let p = s.as_ptr() as *mut c_char;
    keep.push(s);
    p
}

pub fn strbuf<const N: usize>(rng: &mut Rng) -> [u8; N] {
    let mut b = [0u8; N];
    let s = rng.bytes(N - 1, false);
    b[..s.len()].copy_from_slice(&s);
    b
}

pub fn opaque<const N: usize>(rng: &mut Rng) -> [u8; N] {
    core::array::from_fn(|_| rng.next() as u8)
}

pub fn inner(rng: &mut Rng, keep: &mut Vec<CString>) -> Inner {
    Inner {
        a: rng.int(8, true) as i8,
        b: rng.int(16, false) as u16,
        s: strptr(rng, keep),
        buf: strbuf(rng),
        op: opaque(rng),
        c: rng.next() as i64,
    }
}

pub fn random_outer(rng: &mut Rng, keep: &mut Vec<CString>) -> Outer {
    Outer {
        i8s: rng.int(8, true) as i8,
        i16s: rng.int(16, true) as i16,
        i32s: rng.int(32, true) as i32,
        i64s: rng.int(64, true) as i64,
        u8s: rng.int(8, false) as u8,
        u16s: rng.int(16, false) as u16,
        u32s: rng.int(32, false) as u32,
        u64s: rng.int(64, false) as u64,
        name: strptr(rng, keep),
        inner: inner(rng, keep),
        inners: [inner(rng, keep), inner(rng, keep), inner(rng, keep)],
        ints: core::array::from_fn(|_| rng.int(32, true) as i32),
        strs: core::array::from_fn(|_| strptr(rng, keep)),
        opaque: opaque(rng),
        strbuf: strbuf(rng),
    }
}
