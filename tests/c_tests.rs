//! The C test programs of `c-tests/`, compiled with `-Wall -Werror` against
//! the headers and library as `make install` lays them out, run, and their
//! output compared with `c-tests/expected/NAME.stdout`.
//!
//! `make test` installs into `build/stage` and passes it as
//! `LIBCAPS_STAGE`; a plain `cargo test` stages a debug build itself.
//!
//! Expected-output files are compared line by line; a line may contain
//! `{PTR}` (a `%p` value), `{NUM}` (a decimal integer), `{HEX}` (hex
//! digits) or end in `{ANY}` (the rest of the line).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// How a test program must end.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Exit {
    Code(i32),
    Signal(i32),
}

/// One run of a C test program.
struct CTest {
    /// Test name: expected output is `c-tests/expected/NAME.stdout`.
    name: &'static str,
    /// Source file stem in `c-tests/`.
    src: &'static str,
    args: &'static [&'static str],
    stdin: Option<&'static str>,
    exit: Exit,
    /// Fragments that must appear on stderr.
    stderr_has: &'static [&'static str],
    /// Link against `libcaps.a` (`pkg-config --static`) instead of the .so.
    static_link: bool,
}

const DEFAULT: CTest = CTest {
    name: "",
    src: "",
    args: &[],
    stdin: None,
    exit: Exit::Code(0),
    stderr_has: &[],
    static_link: false,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The install tree (`DESTDIR` + `/usr`) the tests compile against.
fn stage() -> &'static Path {
    static STAGE: OnceLock<PathBuf> = OnceLock::new();
    STAGE.get_or_init(|| {
        if let Some(s) = std::env::var_os("LIBCAPS_STAGE") {
            return PathBuf::from(s);
        }
        let dest = root().join("target/c-stage");
        let _ = std::fs::remove_dir_all(&dest);
        let status = Command::new("make")
            .arg("-C")
            .arg(root())
            .arg("install")
            .arg("PROFILE=debug")
            .arg("PREFIX=/usr")
            .arg(format!("DESTDIR={}", dest.display()))
            .stdout(Stdio::null())
            .status()
            .expect("run make install");
        assert!(
            status.success(),
            "make install into {} failed",
            dest.display()
        );
        dest
    })
}

/// `pkg-config ARGS libcaps` against the staged tree.
fn pkg_config(args: &[&str]) -> Vec<String> {
    let stage = stage();
    let out = Command::new("pkg-config")
        .args(args)
        .arg("libcaps")
        .env("PKG_CONFIG_PATH", stage.join("usr/lib/pkgconfig"))
        .env("PKG_CONFIG_SYSROOT_DIR", stage)
        .output()
        .expect("run pkg-config");
    assert!(
        out.status.success(),
        "pkg-config {args:?} failed: {:?}",
        out
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Compile `c-tests/SRC.c` into `target/c-tests/NAME`.
fn compile(t: &CTest) -> PathBuf {
    let out_dir = root().join("target/c-tests");
    std::fs::create_dir_all(&out_dir).unwrap();
    let exe = out_dir.join(t.name);
    let mut cmd = Command::new("cc");
    cmd.args(["-Wall", "-Werror", "-O1", "-g", "-DSMP", "-o"])
        .arg(&exe);
    cmd.arg(root().join("c-tests").join(format!("{}.c", t.src)));
    cmd.args(pkg_config(&["--cflags"]));
    if t.static_link {
        let libdir = stage().join("usr/lib");
        cmd.arg(libdir.join("libcaps.a"));
        let libs = pkg_config(&["--static", "--libs"]);
        cmd.args(
            libs.iter()
                .filter(|a| !a.starts_with("-L") && *a != "-lcaps"),
        );
    } else {
        cmd.args(pkg_config(&["--libs"]));
        cmd.arg(format!("-Wl,-rpath,{}", stage().join("usr/lib").display()));
    }
    let out = cmd.output().expect("run cc");
    assert!(
        out.status.success(),
        "compiling {}.c failed:\n{}",
        t.src,
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

fn run(t: &CTest) -> Output {
    let exe = compile(t);
    let mut child = Command::new(&exe)
        .args(t.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn test program");
    let mut stdin = child.stdin.take().unwrap();
    if let Some(input) = t.stdin {
        stdin.write_all(input.as_bytes()).unwrap();
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// Does `line` match the expected `pat` (with placeholders)?
fn line_matches(pat: &str, line: &str) -> bool {
    let Some(open) = pat.find('{') else {
        return pat == line;
    };
    let Some(close) = pat[open..].find('}').map(|c| c + open) else {
        return pat == line;
    };
    let (lit, tag, rest) = (&pat[..open], &pat[open + 1..close], &pat[close + 1..]);
    let Some(after) = line.strip_prefix(lit) else {
        return false;
    };
    let take = |pred: &dyn Fn(char) -> bool, s: &str| s.find(|c: char| !pred(c)).unwrap_or(s.len());
    let n = match tag {
        "ANY" => return true,
        "PTR" if after.starts_with("(nil)") => 5,
        "PTR" => {
            let Some(hex) = after.strip_prefix("0x") else {
                return false;
            };
            2 + take(&|c| c.is_ascii_hexdigit(), hex)
        }
        "HEX" => take(&|c| c.is_ascii_hexdigit(), after),
        "NUM" => {
            let neg = usize::from(after.starts_with('-'));
            neg + take(&|c| c.is_ascii_digit(), &after[neg..])
        }
        _ => return pat == line,
    };
    n > 0 && line_matches(rest, &after[n..])
}

fn check(t: CTest) {
    let out = run(&t);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let got = match (
        out.status.code(),
        std::os::unix::process::ExitStatusExt::signal(&out.status),
    ) {
        (Some(c), _) => Exit::Code(c),
        (None, Some(s)) => Exit::Signal(s),
        _ => unreachable!(),
    };
    assert_eq!(
        got, t.exit,
        "{}: exit status\nstdout:\n{stdout}\nstderr:\n{stderr}",
        t.name
    );
    for frag in t.stderr_has {
        assert!(
            stderr.contains(frag),
            "{}: stderr lacks {frag:?}:\n{stderr}",
            t.name
        );
    }
    let exp_path = root()
        .join("c-tests/expected")
        .join(format!("{}.stdout", t.name));
    let expected = std::fs::read_to_string(&exp_path)
        .unwrap_or_else(|e| panic!("{}: {e}", exp_path.display()));
    let (exp, got): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), stdout.lines().collect());
    for (i, (e, g)) in exp.iter().zip(&got).enumerate() {
        assert!(
            line_matches(e, g),
            "{}: line {}:\n expected {e:?}\n got      {g:?}\nstdout:\n{stdout}",
            t.name,
            i + 1
        );
    }
    assert_eq!(
        exp.len(),
        got.len(),
        "{}: line count\nstdout:\n{stdout}\nstderr:\n{stderr}",
        t.name
    );
}

/// `c_test!(fn_name, CTest { ... })`: one `#[test]` per program run.
macro_rules! c_test {
    ($fn:ident, $($field:ident: $val:expr),* $(,)?) => {
        #[test]
        fn $fn() {
            check(CTest { name: stringify!($fn), $($field: $val,)* ..DEFAULT });
        }
    };
}

const SIGABRT: i32 = 6;

// ---- message ports -----------------------------------------------------
c_test!(msgport, src: "msgport");
c_test!(msgport_static, src: "msgport", static_link: true);
c_test!(msgport_symbols, src: "msgport_symbols");
c_test!(msgport_null_args, src: "msgport_bad", args: &["null-args"],
    stderr_has: &["lwkt_domsg: NULL port", "lwkt_beginmsg: NULL message", "lwkt_waitmsg: NULL message"]);
c_test!(msgport_double_reply, src: "msgport_bad", args: &["double-reply"],
    exit: Exit::Signal(SIGABRT), stderr_has: &["lwkt_replymsg: message 0x", "replied twice"]);
c_test!(msgport_null_sendmsg, src: "msgport_bad", args: &["null-sendmsg"],
    exit: Exit::Signal(SIGABRT), stderr_has: &["lwkt_sendmsg: NULL port"]);
c_test!(msgport_no_vectors, src: "msgport_bad", args: &["no-vectors"],
    exit: Exit::Signal(SIGABRT), stderr_has: &["lwkt_domsg: port 0x", "has no mp_putport"]);
c_test!(msgport_wait_forever, src: "msgport_bad", args: &["wait-forever"],
    exit: Exit::Signal(SIGABRT), stderr_has: &["lwkt_waitport: deadlock"]);

// ---- slab allocator ----------------------------------------------------
c_test!(slab_basic, src: "slab_basic");
c_test!(slab_basic_static, src: "slab_basic", static_link: true);
c_test!(slab_threads, src: "slab_threads");
c_test!(slab_limit_nullok, src: "slab_bad", args: &["limit-nullok"]);
c_test!(slab_bad_foreign, src: "slab_bad", args: &["foreign"],
    exit: Exit::Signal(SIGABRT), stderr_has: &["slab_free: pointer 0x", "was not returned by slab_malloc"]);
c_test!(slab_bad_stack, src: "slab_bad", args: &["stack"],
    exit: Exit::Signal(SIGABRT), stderr_has: &["slab_free: pointer 0x", "was not returned by slab_malloc"]);
c_test!(slab_bad_interior, src: "slab_bad", args: &["interior"],
    exit: Exit::Signal(SIGABRT), stderr_has: &["points inside a chunk, not at its start"]);
c_test!(slab_bad_double, src: "slab_bad", args: &["double"],
    exit: Exit::Signal(SIGABRT), stderr_has: &["slab_free: double free of 0x"]);
c_test!(slab_bad_double_remote, src: "slab_bad", args: &["double-remote"],
    exit: Exit::Signal(SIGABRT), stderr_has: &["slab_free: double free of 0x"]);
c_test!(slab_bad_double_oversized, src: "slab_bad", args: &["double-oversized"],
    exit: Exit::Signal(SIGABRT), stderr_has: &["or was already freed (double free)"]);
c_test!(slab_bad_wrong_type, src: "slab_bad", args: &["wrong-type"],
    exit: Exit::Signal(SIGABRT),
    stderr_has: &["wrong malloc_type for 0x", "freed as malloc type 'two' but allocated as malloc type 'one'"]);
c_test!(slab_bad_wrong_type_oversized, src: "slab_bad", args: &["wrong-type-oversized"],
    exit: Exit::Signal(SIGABRT),
    stderr_has: &["freed as malloc type 'two' but allocated as malloc type 'one'"]);
c_test!(slab_bad_no_magic, src: "slab_bad", args: &["no-magic"],
    exit: Exit::Signal(SIGABRT), stderr_has: &["slab_malloc: malloc type 0x", "lacks magic"]);
c_test!(slab_bad_limit, src: "slab_bad", args: &["limit"],
    exit: Exit::Signal(SIGABRT), stderr_has: &["slab_malloc: malloc type 'one': malloc limit exceeded"]);

/// Every installed header compiles on its own (after `<sys/types.h>`), as
/// C11 and as C++, with warnings as errors.
#[test]
fn headers_compile_standalone() {
    let inc = stage().join("usr/include/libcaps");
    let dir = root().join("target/c-tests/hdr");
    std::fs::create_dir_all(&dir).unwrap();
    let mut checked = 0;
    for sub in ["sys", "libcaps"] {
        let Ok(entries) = std::fs::read_dir(inc.join(sub)) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.extension().is_none_or(|x| x != "h") {
                continue;
            }
            let hdr = format!("{sub}/{}", p.file_name().unwrap().to_str().unwrap());
            let src = dir.join("one.c");
            std::fs::write(
                &src,
                format!(
                    "#include <sys/types.h>\n#include <{hdr}>\nint main(void) {{ return 0; }}\n"
                ),
            )
            .unwrap();
            for (compiler, std) in [("cc", "-std=gnu11"), ("c++", "-std=gnu++17")] {
                let out = Command::new(compiler)
                    .args([
                        "-Wall",
                        "-Wextra",
                        "-Werror",
                        "-DSMP",
                        std,
                        "-fsyntax-only",
                        "-x",
                    ])
                    .arg(if compiler == "cc" { "c" } else { "c++" })
                    .arg(&src)
                    .arg(format!("-I{}", inc.display()))
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{hdr} with {compiler}:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 2, "no headers found under {}", inc.display());
}

#[test]
fn pattern_matcher() {
    assert!(line_matches("a {PTR} b {NUM}", "a 0x7ffd12 b -42"));
    assert!(line_matches("x {PTR}", "x (nil)"));
    assert!(!line_matches("a {NUM}", "a x"));
    assert!(line_matches("head {ANY}", "head whatever follows"));
    assert!(!line_matches("a {HEX} z", "a 00ff y"));
}
