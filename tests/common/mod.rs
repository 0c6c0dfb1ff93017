//! Shared by the integration tests that compile and run C programs against
//! the installed library.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The install tree (`DESTDIR` + `/usr`) the tests compile against.
pub fn stage() -> &'static Path {
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
pub fn pkg_config(args: &[&str]) -> Vec<String> {
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

/// Compile `c-tests/SRC.c` into `target/c-tests/NAME` with `-Wall -Werror`
/// against the staged install, through `pkg-config`.
pub fn compile_c(name: &str, src: &str, static_link: bool) -> PathBuf {
    compile_c_with(name, src, static_link, &[])
}

/// [`compile_c`] with extra compiler arguments (`extra`, placed after the
/// source file: options and libraries such as `-lm`).
pub fn compile_c_with(name: &str, src: &str, static_link: bool, extra: &[&str]) -> PathBuf {
    let out_dir = root().join("target/c-tests");
    std::fs::create_dir_all(&out_dir).unwrap();
    let exe = out_dir.join(name);
    let mut cmd = Command::new("cc");
    cmd.args(["-Wall", "-Werror", "-O1", "-g", "-DSMP", "-o"])
        .arg(&exe);
    cmd.arg(root().join("c-tests").join(format!("{}.c", src)));
    cmd.args(extra);
    cmd.args(pkg_config(&["--cflags"]));
    if static_link {
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
        src,
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}
