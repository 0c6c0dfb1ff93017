//! Fuzz test of `caps_decode`: random and mutated inputs must never crash,
//! never read outside the input (each input is its own exact-size heap
//! block, so valgrind or ASan see any overrun), never leak, and always end
//! with 0, `EINVAL` or `ENOENT` and an offset inside the input. On
//! `EINVAL` no string allocated by the call may remain in the structure.
//!
//! `LIBCAPS_FUZZ_ITERS` sets the number of inputs (default 1,000,000 in an
//! optimised build, 100,000 in a debug build). Leaks are checked with
//! glibc's `mallinfo2()` (bytes in use before and after); for valgrind,
//! run the test binary with a smaller count, e.g.
//! `LIBCAPS_FUZZ_ITERS=20000 valgrind --leak-check=full --error-exitcode=1 target/debug/deps/encoding_fuzz-*`.
//! This file holds a single test so that nothing else allocates meanwhile.

mod encoding_common;

use core::ffi::{c_char, c_void};
use std::ffi::CString;

use ::caps::capi::caps_struct::{
    caps_decode, caps_encode, caps_passwd_struct, caps_struct_free_pointers,
};
use encoding_common::*;

/// Pieces of the grammar, so that random inputs get past the tokenizer.
const TOKENS: &[&[u8]] = &[
    b"Souter",
    b"Sinner",
    b"Spasswd",
    b"Sx",
    b"{",
    b"}",
    b",",
    b"F",
    b"F1",
    b"F3",
    b"F9",
    b"Fa",
    b"Fb",
    b"Fd",
    b"F1f",
    b"Fffffffffff",
    b"D",
    b"D0",
    b"D-1",
    b"D-",
    b"D?",
    b"Dfff",
    b"D\"",
    b"D\"a%20\"",
    b"D\"%zz\"",
    b"D\"%2",
    b"\"",
    b"%",
    b"%4A",
    b"A",
    b"A3",
    b"A0",
    b"Affffffff",
    b"A3{",
    b"Q",
    b"Zz",
    b" ",
    b"\n",
    b"-",
    b"x",
    b"\0",
    b"\xff",
];

fn iters() -> usize {
    let default = if cfg!(debug_assertions) {
        100_000
    } else {
        1_000_000
    };
    std::env::var("LIBCAPS_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn in_use() -> usize {
    // SAFETY: mallinfo2 only reads allocator statistics.
    unsafe { libc::mallinfo2() }.uordblks
}

/// Valid encodings to mutate: random Outer values and passwd entries.
fn corpus(rng: &mut Rng) -> Vec<(bool, Vec<u8>)> {
    let mut out = Vec::new();
    for _ in 0..48 {
        let mut keep: Vec<CString> = Vec::new();
        let mut v = random_outer(rng, &mut keep);
        let mut buf = vec![0u8; 4096];
        // SAFETY: OUTER describes Outer; `buf` has 4096 bytes.
        let n =
            unsafe { caps_encode(buf.as_mut_ptr().cast(), 4096, (&raw mut v).cast(), &OUTER.0) };
        buf.truncate(n as usize);
        out.push((false, buf));
    }
    for name in [c"root", c"daemon", c"nobody", c"bin"] {
        // SAFETY: getpwnam with a valid name; the result is used at once.
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        if pw.is_null() {
            continue;
        }
        let mut buf = vec![0u8; 1024];
        // SAFETY: caps_passwd_struct describes struct passwd.
        let n = unsafe {
            caps_encode(
                buf.as_mut_ptr().cast(),
                1024,
                pw.cast(),
                &caps_passwd_struct.0,
            )
        };
        buf.truncate(n as usize);
        out.push((true, buf));
    }
    out.push((true, br#"Spasswd{F1D"root",F2D"%2a",F3D0,F4D0,F5D0,F6D"",F7D"Charlie%20%26",F8D"/root",F9D"/bin/csh",FaD0}"#.to_vec()));
    out
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            1 if len > 0 => {
                let i = rng.below(len);
                let j = (i + 1 + rng.below(8)).min(len);
                input.drain(i..j);
            }
            2 => {
                let i = rng.below(len + 1);
                let t = TOKENS[rng.below(TOKENS.len())];
                input.splice(i..i, t.iter().copied());
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let j = (i + 1 + rng.below(32)).min(len);
                let piece = input[i..j].to_vec();
                let k = rng.below(len + 1);
                input.splice(k..k, piece);
            }
            4 => input.truncate(rng.below(len + 1)),
            _ => {
                let i = rng.below(len + 1);
                let b = b"{},\"%-DFAS"[rng.below(10)];
                input.insert(i, b);
            }
        }
    }
}

fn generate(rng: &mut Rng, corpus: &[(bool, Vec<u8>)]) -> (bool, Vec<u8>) {
    match rng.below(5) {
        0 => (rng.below(2) == 0, rng.bytes(64, true)),
        1 => {
            let mut v = Vec::new();
            for _ in 0..rng.below(24) {
                v.extend_from_slice(TOKENS[rng.below(TOKENS.len())]);
            }
            (rng.below(2) == 0, v)
        }
        _ => {
            let (pw, base) = &corpus[rng.below(corpus.len())];
            let mut v = base.clone();
            mutate(rng, &mut v);
            (*pw, v)
        }
    }
}

/// Decode one input into a zeroed structure, check the contract, free.
/// Returns the error.
fn check(passwd: bool, input: &[u8]) -> i32 {
    // The input as its own exact-size allocation.
    let boxed: Box<[u8]> = input.into();
    let mut error = -1;
    let used;
    if passwd {
        // SAFETY: all-zero is a valid passwd.
        let mut pw: libc::passwd = unsafe { core::mem::zeroed() };
        // SAFETY: `boxed` holds `len` bytes; the schema describes passwd.
        used = unsafe {
            caps_decode(
                boxed.as_ptr().cast(),
                boxed.len() as i32,
                (&raw mut pw).cast::<c_void>(),
                &caps_passwd_struct.0,
                &mut error,
            )
        };
        let slots = [
            pw.pw_name,
            pw.pw_passwd,
            pw.pw_gecos,
            pw.pw_dir,
            pw.pw_shell,
        ];
        if error == libc::EINVAL {
            assert!(
                slots.iter().all(|p| p.is_null()),
                "strings left after EINVAL: {:?}",
                String::from_utf8_lossy(input)
            );
        }
        // SAFETY: pointers are NULL or from caps_decode.
        unsafe { caps_struct_free_pointers((&raw mut pw).cast(), &caps_passwd_struct.0) };
    } else {
        let mut o = zeroed_outer();
        // SAFETY: `boxed` holds `len` bytes; OUTER describes Outer.
        used = unsafe {
            caps_decode(
                boxed.as_ptr().cast(),
                boxed.len() as i32,
                (&raw mut o).cast::<c_void>(),
                &OUTER.0,
                &mut error,
            )
        };
        if error == libc::EINVAL {
            for s in string_slots(&mut o) {
                // SAFETY: `s` points into `o`.
                let p: *mut c_char = unsafe { *s };
                assert!(
                    p.is_null(),
                    "string left after EINVAL: {:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
        // SAFETY: pointers are NULL or from caps_decode.
        unsafe { caps_struct_free_pointers((&raw mut o).cast(), &OUTER.0) };
    }
    assert!(
        (0..=input.len() as i32).contains(&used),
        "offset {used} outside 0..={}: {:?}",
        input.len(),
        String::from_utf8_lossy(input)
    );
    assert!(
        [0, libc::EINVAL, libc::ENOENT].contains(&error),
        "error {error}: {:?}",
        String::from_utf8_lossy(input)
    );
    error
}

/// Runs the fuzz loop in a child process with glibc's per-thread cache
/// off (`GLIBC_TUNABLES=glibc.malloc.tcache_count=0`): chunks parked in
/// that cache count as "in use" in `mallinfo2()`, which would blur the
/// leak check; without it the figure is exact.
#[test]
fn decode_random_and_mutated_inputs() {
    if std::env::var_os("LIBCAPS_FUZZ_CHILD").is_some() {
        return fuzz_loop();
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "decode_random_and_mutated_inputs",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LIBCAPS_FUZZ_CHILD", "1")
        .env("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0")
        .output()
        .expect("run the fuzz child");
    let err = String::from_utf8_lossy(&out.stderr);
    eprint!("{err}");
    assert!(out.status.success(), "fuzz child failed:\n{err}");
    assert!(
        err.contains("encoding_fuzz: "),
        "fuzz child did not run:\n{err}"
    );
}

fn fuzz_loop() {
    let n = iters();
    let seed = std::env::var("LIBCAPS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xf022u64);
    let mut rng = Rng(seed);
    let corpus = corpus(&mut rng);
    let mut counts = [0usize; 3];
    let mut tally = |e: i32| match e {
        0 => counts[0] += 1,
        libc::EINVAL => counts[1] += 1,
        _ => counts[2] += 1,
    };
    // Warm up (lazy allocations of the allocator and of std), then measure.
    for _ in 0..1000 {
        let (pw, v) = generate(&mut rng, &corpus);
        tally(check(pw, &v));
    }
    let before = in_use();
    let start = std::time::Instant::now();
    for _ in 1000..n.max(1000) {
        let (pw, v) = generate(&mut rng, &corpus);
        tally(check(pw, &v));
    }
    let after = in_use();
    eprintln!(
        "encoding_fuzz: {} inputs in {:.2?} (ok {}, EINVAL {}, ENOENT {}); heap in use {} -> {} bytes",
        n.max(1000),
        start.elapsed(),
        counts[0],
        counts[1],
        counts[2],
        before,
        after
    );
    assert!(
        after <= before + 4096,
        "heap grew by {} bytes: leak",
        after - before
    );
    // The generator must exercise every outcome.
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
}
