//! Static links, as the README gives them:
//!
//!  - `cc -static prog.c $(pkg-config --cflags --libs --static libcaps)`:
//!    a fully static CAPS program (caps1, server and client) and a fully
//!    static threads program, run;
//!  - a C program that links `libcaps.a` together with a second Rust
//!    static library built here: `libcaps.a` exports only the libcaps API,
//!    so the other library's copy of the Rust standard library (which
//!    could come from another compiler) never meets ours.

mod common;

use common::{pkg_config, root, stage, wait_deadline};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(120);

fn out_dir() -> PathBuf {
    let d = root().join("target/c-tests");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn check(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `cc -static -Wall -Werror SRC -o NAME $(pkg-config --cflags --libs --static libcaps)`.
fn cc_static(name: &str, src: &Path) -> PathBuf {
    let exe = out_dir().join(name);
    let out = Command::new("cc")
        .args(["-static", "-Wall", "-Werror", "-O2", "-DSMP", "-o"])
        .arg(&exe)
        .arg(src)
        .args(pkg_config(&["--cflags", "--libs", "--static"]))
        .output()
        .expect("run cc");
    check(&format!("cc -static {}", src.display()), &out);
    let dynamic = Command::new("readelf")
        .arg("-d")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&dynamic.stdout).contains("There is no dynamic section"),
        "{name} is not fully static"
    );
    exe
}

fn run(cmd: &mut Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_deadline(child, DEADLINE, &format!("{cmd:?}"))
}

#[test]
fn fully_static_threads_program_runs() {
    let exe = cc_static(
        "defs_umbrella-static",
        &root().join("c-tests/defs_umbrella.c"),
    );
    let out = run(&mut Command::new(&exe));
    check("defs_umbrella (static)", &out);
    let want =
        std::fs::read_to_string(root().join("c-tests/expected/defs_umbrella.stdout")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
}

#[test]
fn fully_static_caps_server_and_client_run() {
    let exe = cc_static("caps1-static", &root().join("c-tests/caps1.c"));
    let dir = std::env::temp_dir().join(format!("libcaps-static-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = Command::new(&exe)
        .args(["-s", "-q2", "-n3"])
        .env("LIBCAPS_DIR", &dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let sock = if uid == 0 {
        dir.join("root/test")
    } else {
        dir.join(format!("users/{uid}/test"))
    };
    let start = Instant::now();
    while !sock.exists() {
        assert!(
            start.elapsed() < DEADLINE,
            "the static server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = run(Command::new(&exe)
        .args(["-c", "-n3"])
        .env("LIBCAPS_DIR", &dir));
    check("caps1 -c (static)", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    for i in 0..3 {
        assert!(
            text.contains(&format!("reply: error=23/23 res={i}/{i}\n")),
            "{text}"
        );
    }
    let served = wait_deadline(server, DEADLINE, "the static server, after 3 requests");
    assert!(served.status.success(), "{served:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A small Rust library that uses the standard library (strings, a hash
/// map, formatting), built as a `staticlib` by the rustc running the
/// tests.
const OTHER_RS: &str = r#"
use std::collections::HashMap;
use std::ffi::{CStr, c_char};

/// The number of distinct words of a C string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn other_distinct_words(text: *const c_char) -> usize {
    // SAFETY: the caller passes a NUL-terminated string.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for w in text.split_whitespace() {
        *seen.entry(format!("{w}")).or_default() += 1;
    }
    seen.len()
}
"#;

const MIXED_C: &str = r#"
#include <libcaps/defs.h>

size_t other_distinct_words(const char *text);

MALLOC_DEFINE(M_MIXED, "mixed", "libcaps.a beside another Rust library");

int
main(void)
{
	char *s = slab_malloc(64, M_MIXED, M_ZERO);

	strcpy(s, "to be or not to be");
	printf("%zu distinct words, slab calls %lld\n",
	    other_distinct_words(s), (long long)M_MIXED->ks_calls);
	slab_free(s, M_MIXED);
	printf("main is main_td: %s\n", curthread == &main_td ? "yes" : "no");
	return (0);
}
"#;

#[test]
fn libcaps_a_links_beside_another_rust_staticlib() {
    let dir = out_dir().join("mixed");
    std::fs::create_dir_all(&dir).unwrap();
    let rs = dir.join("other.rs");
    std::fs::write(&rs, OTHER_RS).unwrap();
    let other = dir.join("libother.a");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .args([
            "--edition",
            "2024",
            "--crate-type",
            "staticlib",
            "-O",
            "-C",
            "panic=abort",
        ])
        .arg("-o")
        .arg(&other)
        .arg(&rs)
        .output()
        .expect("run rustc");
    check("rustc other.rs", &out);

    let c = dir.join("mixed.c");
    std::fs::write(&c, MIXED_C).unwrap();
    let exe = dir.join("mixed");
    let libs = pkg_config(&["--static", "--libs"]);
    let out = Command::new("cc")
        .args(["-Wall", "-Werror", "-DSMP", "-o"])
        .arg(&exe)
        .arg(&c)
        .args(pkg_config(&["--cflags"]))
        .arg(stage().join("usr/lib/libcaps.a"))
        .arg(&other)
        .args(
            libs.iter()
                .filter(|a| !a.starts_with("-L") && *a != "-lcaps"),
        )
        .output()
        .expect("run cc");
    check("cc mixed.c libcaps.a libother.a", &out);
    let out = run(&mut Command::new(&exe));
    check("mixed", &out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "4 distinct words, slab calls 1\nmain is main_td: yes\n"
    );
}
