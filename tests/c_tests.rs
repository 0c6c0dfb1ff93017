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
mod common;

use common::{compile_c_with, root, stage};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

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
    /// Fragments that must not appear on stderr.
    stderr_lacks: &'static [&'static str],
    /// Extra compiler arguments (after the source: options, `-lm`).
    cflags: &'static [&'static str],
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
    stderr_lacks: &[],
    cflags: &[],
    static_link: false,
};

/// Seconds a test program may run before it is killed (a hang fails).
const DEADLINE_SECS: &str = "120";

/// Compile the test's program.
fn compile(t: &CTest) -> PathBuf {
    compile_c_with(t.name, t.src, t.static_link, t.cflags)
}

fn run(t: &CTest) -> Output {
    let exe = compile(t);
    let mut child = Command::new("timeout")
        .args(["-s", "KILL", DEADLINE_SECS])
        .arg(&exe)
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
    for frag in t.stderr_lacks {
        assert!(
            !stderr.contains(frag),
            "{}: stderr has {frag:?}:\n{stderr}",
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
const SIGSEGV: i32 = 11;

// ---- <libcaps/defs.h> alone: threads, vcpus, ports, slab, encoder ------
c_test!(defs_umbrella, src: "defs_umbrella");
c_test!(defs_umbrella_static, src: "defs_umbrella", static_link: true);

// ---- message ports -----------------------------------------------------
c_test!(msgport, src: "msgport");
c_test!(msgport_static, src: "msgport", static_link: true);
c_test!(msgport_symbols, src: "msgport_symbols");
// lwkt_domsg handing the cpu to a waiting server: scheduling order and
// message states kept (issue 19)
c_test!(msg_handoff, src: "msg_handoff");
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

// ---- structural encoding (caps_struct) ----------------------------------
c_test!(caps_d_errors, src: "caps_d", exit: Exit::Code(1), stdin: Some(concat!(
    "Spasswd{F1D\"ro ot\",F3D0}\n",
    "Spasswd{F1D\"root\"\n",
    "Spasswd{F3Dzz}\n",
    "Spasswd{F1D\"a%zz\"}\n",
    "Sgroup{F1D\"wheel\"}\n",
    "Spasswd{F1D\"root\",F2D\"%2a\",F3D0,F4D0,F5D0,F6D\"\",F7D\"Charlie%20%26\",F8D\"/root\",F9D\"/bin/csh\",FaD0}\n",
    "Spasswd{F3D-1,F4D100000000}\n",
)));
c_test!(caps_e_unknown_user, src: "caps_e", args: &["no-such-user-libcaps"], exit: Exit::Code(1),
    stderr_has: &["caps_e: no-such-user-libcaps: lookup failed"]);

/// `caps_e USERS | caps_d` for users present on Debian and here: every
/// field caps_d prints matches getpwnam().
#[test]
fn caps_e_pipe_caps_d() {
    let users = ["root", "daemon", "bin", "sys", "nobody"];
    let enc = compile(&CTest {
        name: "caps_e",
        src: "caps_e",
        ..DEFAULT
    });
    let dec = compile(&CTest {
        name: "caps_d",
        src: "caps_d",
        ..DEFAULT
    });
    let e = Command::new(&enc).args(users).output().expect("run caps_e");
    assert!(
        e.status.success(),
        "caps_e: {}",
        String::from_utf8_lossy(&e.stderr)
    );
    let lines = String::from_utf8(e.stdout.clone()).unwrap();
    assert_eq!(lines.lines().count(), users.len(), "{lines}");
    for l in lines.lines() {
        assert!(l.starts_with("Spasswd{F1D\"") && l.ends_with('}'), "{l}");
    }
    let mut child = Command::new(&dec)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn caps_d");
    child.stdin.take().unwrap().write_all(&e.stdout).unwrap();
    let d = child.wait_with_output().unwrap();
    assert!(d.status.success(), "caps_d failed");
    let out = String::from_utf8(d.stdout).unwrap();
    let mut blocks = out.split("decode ").skip(1);
    for (user, line) in users.iter().zip(lines.lines()) {
        let block = blocks
            .next()
            .unwrap_or_else(|| panic!("no block for {user}:\n{out}"));
        assert!(
            block.starts_with(&format!("{} bytes error 0\n{{\n", line.len())),
            "{block}"
        );
        let pw = nix::unistd::User::from_name(user).unwrap().unwrap();
        let want = format!(
            "    pw_name = \"{}\"\n    pw_passwd = \"{}\"\n    pw_uid = {}\n    pw_gid = {}\n    pw_gecos = \"{}\"\n    pw_dir = \"{}\"\n    pw_shell = \"{}\"\n}}\n",
            pw.name,
            pw.passwd.to_str().unwrap(),
            pw.uid.as_raw() as i32,
            pw.gid.as_raw() as i32,
            pw.gecos.to_str().unwrap(),
            pw.dir.display(),
            pw.shell.display()
        );
        assert!(block.ends_with(&want), "{user}: got\n{block}\nwant\n{want}");
    }
    assert!(blocks.next().is_none(), "{out}");
}
// ---- threads -------------------------------------------------------------

c_test!(thr1, src: "thr1", exit: Exit::Code(1));
c_test!(thr1_static, src: "thr1", exit: Exit::Code(1), static_link: true);
c_test!(thr2, src: "thr2");
c_test!(thr_pingpong, src: "thr_pingpong");
c_test!(thr_waves, src: "thr_waves");
// A hundred thousand parked threads, and lwkt_create out of memory (issue 19)
c_test!(thr_parked, src: "thr_parked");
c_test!(thr_nomem, src: "thr_nomem",
    stderr_has: &["libcaps: lwkt_create: cannot create thread \"t"]);
c_test!(thr_prio, src: "thr_prio");
c_test!(thr_names, src: "thr_names");
// A plain name copied, not formatted: every byte as vsnprintf gives it.
c_test!(thr_names_copy, src: "thr_names_copy");
// A structure from the cache of exited threads is handed out fresh.
c_test!(thr_reuse, src: "thr_reuse");
// A structure reused after an exit that resumed it without a switch
// starts in its new function (the switch's record of the last thread).
c_test!(thr_resume_reused, src: "thr_resume_reused");
// lwkt_free_thread of the last switched-out thread, then a structure at
// its address: it starts in its own function (the record is emptied).
c_test!(thr_free_recorded, src: "thr_free_recorded");
// The cache of exited threads hands out the last one in first.
c_test!(thr_cache_lifo, src: "thr_cache_lifo");
// TDF_SYSTHREAD given to lwkt_create: main does not wait for that thread.
c_test!(thr_systhread, src: "thr_systhread");
c_test!(thr_wait, src: "thr_wait");
c_test!(thr_bad_crit_switch, src: "thr_bad", args: &["crit-switch"],
    exit: Exit::Signal(SIGABRT), stderr_has: &["lwkt_switch: called inside a critical section"]);
c_test!(thr_bad_crit_block, src: "thr_bad", args: &["crit-block"],
    exit: Exit::Signal(SIGABRT), stderr_has: &["lwkt_block: called inside a critical section"]);
c_test!(thr_bad_crit_negative, src: "thr_bad", args: &["crit-negative"],
    exit: Exit::Signal(SIGABRT), stderr_has: &["crit_exit: negative critical section count"]);
c_test!(thr_bad_idle_exit, src: "thr_bad", args: &["idle-exit"],
    exit: Exit::Signal(SIGABRT), stderr_has: &["lwkt_exit: the idle thread of cpu 0 cannot exit"]);
c_test!(thr_bad_foreign_port, src: "thr_bad", args: &["foreign-port"],
    exit: Exit::Signal(SIGABRT), stderr_has: &["lwkt_waitport: thread 0x", "only the owner may wait on a port"]);
c_test!(thr_bad_deadlock, src: "thr_bad", args: &["deadlock"],
    exit: Exit::Signal(SIGABRT),
    stderr_has: &["deadlock: every thread on cpu 0 is blocked", "\"main\": blocked in waitport", "\"sleeper\": blocked in forever"]);
// errno, floating-point state, stack overflow (issue 11)
c_test!(thr_errno_yield, src: "thr_errno", args: &["yield"]);
c_test!(thr_errno_domsg, src: "thr_errno", args: &["domsg"]);
c_test!(thr_errno_caps, src: "thr_errno", args: &["caps"]);
c_test!(thr_errno_token, src: "thr_errno", args: &["token"]);
c_test!(thr_fpenv, src: "thr_fpenv", cflags: &["-lm"]);
c_test!(gate_regs, src: "gate_regs");
c_test!(gate_unwind, src: "gate_unwind");
c_test!(switch_unwind, src: "switch_unwind");
const NO_CLASH: &[&str] = &["-fno-stack-clash-protection"];
c_test!(thr_overflow_recurse, src: "thr_overflow", args: &["recurse"], cflags: NO_CLASH,
    exit: Exit::Signal(SIGABRT),
    stderr_has: &["libcaps: thread \"worker3\" overflowed its 64 KiB stack (fault at 0x"]);
c_test!(thr_overflow_recurse_vcpu, src: "thr_overflow", args: &["recurse-vcpu"], cflags: NO_CLASH,
    exit: Exit::Signal(SIGABRT),
    stderr_has: &["libcaps: thread \"worker3\" overflowed its 64 KiB stack (fault at 0x"]);
c_test!(thr_overflow_recurse_256k, src: "thr_overflow", args: &["recurse-256k"], cflags: NO_CLASH,
    exit: Exit::Signal(SIGABRT),
    stderr_has: &["libcaps: thread \"worker3\" overflowed its 256 KiB stack (fault at 0x"]);
c_test!(thr_overflow_vla, src: "thr_overflow", args: &["vla"], cflags: NO_CLASH,
    exit: Exit::Signal(SIGABRT),
    stderr_has: &["libcaps: thread \"jumper\" overflowed its 64 KiB stack (fault at 0x"]);
// Frames that jump the guard: built without probing (the Debian
// default), with the default flags, and with probing (faults in the guard).
const ARRAYS_REPORT: &[&str] =
    &["libcaps: thread \"arrays\" overflowed its 64 KiB stack (fault at 0x"];
c_test!(thr_overflow_array_200k, src: "thr_overflow", args: &["array-200k"], cflags: NO_CLASH,
    exit: Exit::Signal(SIGABRT),
    stderr_has: ARRAYS_REPORT);
c_test!(thr_overflow_array_512k, src: "thr_overflow", args: &["array-512k"], cflags: NO_CLASH,
    exit: Exit::Signal(SIGABRT),
    stderr_has: ARRAYS_REPORT);
c_test!(thr_overflow_array_512k_default_flags, src: "thr_overflow", args: &["array-512k"],
    exit: Exit::Signal(SIGABRT),
    stderr_has: ARRAYS_REPORT);
c_test!(thr_overflow_array_512k_probed, src: "thr_overflow", args: &["array-512k"],
    cflags: &["-fstack-clash-protection"], exit: Exit::Signal(SIGABRT),
    stderr_has: ARRAYS_REPORT);
c_test!(thr_overflow_null_handler, src: "thr_overflow", args: &["null-handler"], cflags: NO_CLASH);
c_test!(thr_overflow_null_default, src: "thr_overflow", args: &["null-default"], cflags: NO_CLASH,
    exit: Exit::Signal(SIGSEGV), stderr_lacks: &["libcaps"]);
c_test!(thr_overflow_ignored_raise, src: "thr_overflow", args: &["ignored-raise"], cflags: NO_CLASH,
    exit: Exit::Signal(SIGABRT),
    stderr_has: &["libcaps: thread \"worker3\" overflowed its 64 KiB stack (fault at 0x"]);
// Stacks on a kernel without MADV_GUARD_INSTALL (a seccomp filter makes
// the advice fail with EINVAL): a mapping each, overflow still reported.
const FALLBACK_LINE: &str =
    "uthread_init: thread stacks: 64 KiB + 64 KiB guard, one mapping each, guard by mprotect";
c_test!(thr_parked_noguard, src: "thr_parked", args: &["noguard"], stderr_has: &[FALLBACK_LINE]);
c_test!(thr_overflow_recurse_noguard, src: "thr_overflow", args: &["recurse-noguard"],
    cflags: NO_CLASH, exit: Exit::Signal(SIGABRT),
    stderr_has: &[FALLBACK_LINE, "libcaps: thread \"worker3\" overflowed its 64 KiB stack (fault at 0x"]);
c_test!(thr_nomem_mapcount, src: "thr_nomem", args: &["mapcount"],
    stderr_has: &[FALLBACK_LINE, "libcaps: lwkt_create: cannot create thread \"t"]);
c_test!(fork_first_call_slab, src: "fork_first_call", args: &["slab"], cflags: &["-lpthread"]);
c_test!(fork_first_call_lwkt, src: "fork_first_call", args: &["lwkt"], cflags: &["-lpthread"]);
c_test!(fork_vcpu_main, src: "fork_vcpu", args: &["main"]);
c_test!(fork_vcpu_vcpu, src: "fork_vcpu", args: &["vcpu"]);
c_test!(fork_vcpu_dead_cpu, src: "fork_vcpu", args: &["dead-cpu"],
    stderr_has: &["no cpu 0: its kernel thread is not in this fork() child"]);
// ---- slab allocator ----------------------------------------------------
c_test!(slab_basic, src: "slab_basic");
c_test!(slab_basic_static, src: "slab_basic", static_link: true);
c_test!(slab_threads, src: "slab_threads");
c_test!(slab_dormant, src: "slab_dormant");
c_test!(slab_slots, src: "slab_slots");
c_test!(slab_nomem, src: "slab_bad", args: &["nomem"]);
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

// ---- virtual cpus --------------------------------------------------------
c_test!(vcpu_yield_mplock, src: "vcpu_yield_mplock");
c_test!(vcpu_mplock_wait, src: "vcpu_mplock_wait", stderr_lacks: &["libcaps"]);
c_test!(vcpu_mplock_starve, src: "vcpu_mplock_starve", stderr_lacks: &["libcaps"]);
c_test!(vcpu_rele_xcpu, src: "vcpu_rele_xcpu", stderr_lacks: &["libcaps"]);
c_test!(vcpu_deadlock, src: "vcpu_deadlock", exit: Exit::Signal(SIGABRT),
    stderr_has: &["libcaps: deadlock: all 2 cpus sleep and nothing can wake any of their threads",
        "\"waiter\": blocked in waitport", "\"main\": descheduled"]);

/// Every installed header compiles on its own (after `<sys/types.h>`), as
/// C11, as C++17 and as C++11 with `-pedantic`, with warnings as errors.
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
            for (compiler, std, pedantic) in [
                ("cc", "-std=gnu11", "-Wno-pedantic"),
                ("c++", "-std=gnu++17", "-Wno-pedantic"),
                ("c++", "-std=c++11", "-pedantic"),
            ] {
                let out = Command::new(compiler)
                    .args([
                        "-Wall",
                        "-Wextra",
                        "-Werror",
                        pedantic,
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

/// `c-tests/cxx_macros.cpp` uses every macro and inline function of the
/// headers (`MALLOC_DEFINE`, `CAPS_IN_*`, critical sections, the
/// `msgport2.h` helpers, ...); it compiles as C++11, 14, 17 and 20 with
/// `-Wall -Wextra -Werror -pedantic`, and each build runs.
#[test]
fn cxx_every_macro_and_inline() {
    let dir = root().join("target/c-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let want = std::fs::read_to_string(root().join("c-tests/expected/cxx_macros.stdout")).unwrap();
    for std in ["c++11", "c++14", "c++17", "c++20"] {
        let exe = dir.join(format!("cxx_macros-{std}"));
        let out = Command::new("c++")
            .arg(format!("-std={std}"))
            .args(["-Wall", "-Wextra", "-Werror", "-pedantic", "-DSMP", "-o"])
            .arg(&exe)
            .arg(root().join("c-tests/cxx_macros.cpp"))
            .args(common::pkg_config(&["--cflags", "--libs"]))
            .arg(format!("-Wl,-rpath,{}", stage().join("usr/lib").display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cxx_macros.cpp as {std}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = Command::new(&exe).output().unwrap();
        assert!(run.status.success(), "cxx_macros ({std}): {run:?}");
        assert_eq!(String::from_utf8_lossy(&run.stdout), want, "{std}");
    }
}

#[test]
fn pattern_matcher() {
    assert!(line_matches("a {PTR} b {NUM}", "a 0x7ffd12 b -42"));
    assert!(line_matches("x {PTR}", "x (nil)"));
    assert!(!line_matches("a {NUM}", "a x"));
    assert!(line_matches("head {ANY}", "head whatever follows"));
    assert!(!line_matches("a {HEX} z", "a 00ff y"));
}
