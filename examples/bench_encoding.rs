//! Benchmark: `caps_encode` and `caps_decode` (+ `caps_struct_free_pointers`)
//! of one passwd entry (root's), in ns per call, through the C entry points.
//! Baseline in the same run: the same entry written as an `/etc/passwd`
//! line with `write!` and parsed back with `split(':')` into owned strings.
//!
//! Run: `cargo run --release --example bench_encoding [iterations]`

use std::ffi::c_void;
use std::hint::black_box;
use std::io::Write;
use std::time::Instant;

use caps::capi::caps_struct::{
    caps_decode, caps_encode, caps_passwd_struct, caps_struct_free_pointers,
};

/// Best of 5 runs of `n` calls of `f`, in ns per call.
fn best(n: u32, mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_nanos() as f64 / f64::from(n)
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    // SAFETY: getpwnam with a valid name; the entry stays valid until the
    // next getpw* call, and there is none.
    let pw = unsafe { libc::getpwnam(c"root".as_ptr()) };
    assert!(!pw.is_null(), "no root entry");
    let cs = &caps_passwd_struct.0;
    let mut buf = [0u8; 1024];

    // SAFETY: `buf` has 1024 bytes; the schema describes struct passwd.
    let len = unsafe { caps_encode(buf.as_mut_ptr().cast(), 1024, pw.cast(), cs) };
    let encoded = buf[..len as usize].to_vec();
    println!("entry: {}", String::from_utf8_lossy(&encoded));

    let enc = best(n, || {
        // SAFETY: as above.
        black_box(unsafe { caps_encode(buf.as_mut_ptr().cast(), 1024, black_box(pw).cast(), cs) });
    });
    let dec = best(n, || {
        // SAFETY: all-zero is a valid passwd.
        let mut out: libc::passwd = unsafe { std::mem::zeroed() };
        let mut error = 0;
        // SAFETY: `encoded` holds `len` bytes; strings freed right after.
        unsafe {
            caps_decode(
                encoded.as_ptr().cast(),
                len,
                (&raw mut out).cast::<c_void>(),
                cs,
                &mut error,
            );
            caps_struct_free_pointers((&raw mut out).cast(), cs);
        }
        black_box(error);
    });

    // Baseline: the colon-separated /etc/passwd form.
    // SAFETY: `pw` is valid (above); its strings are NUL-terminated.
    let (name, passwd, uid, gid, gecos, dir, shell) = unsafe {
        let s = |p: *const libc::c_char| std::ffi::CStr::from_ptr(p).to_str().unwrap().to_string();
        let p = &*pw;
        (
            s(p.pw_name),
            s(p.pw_passwd),
            p.pw_uid,
            p.pw_gid,
            s(p.pw_gecos),
            s(p.pw_dir),
            s(p.pw_shell),
        )
    };
    let mut line = Vec::with_capacity(1024);
    let base_enc = best(n, || {
        line.clear();
        write!(line, "{name}:{passwd}:{uid}:{gid}:{gecos}:{dir}:{shell}").unwrap();
        black_box(&line);
    });
    let text = String::from_utf8(line.clone()).unwrap();
    let base_dec = best(n, || {
        let f: Vec<String> = black_box(&text).split(':').map(String::from).collect();
        let uid: u32 = f[2].parse().unwrap();
        black_box((f, uid));
    });

    println!(
        "caps_encode  {enc:7.1} ns/entry   baseline write!  {base_enc:6.1} ns  ratio {:.2}",
        enc / base_enc
    );
    println!(
        "caps_decode  {dec:7.1} ns/entry   baseline split   {base_dec:6.1} ns  ratio {:.2}",
        dec / base_dec
    );
    println!("(decode includes caps_struct_free_pointers; best of 5 x {n} calls)");
}
