//! Builds the ABI test: the Rust definitions of every public type and
//! constant (`src/abi/*.rs`, included verbatim) and a declaration of every
//! exported function (read from `src/capi/*.rs`) are checked by ctest2
//! against the C headers: sizes, alignments, field offsets and types,
//! constant values, and function signatures (a typed function pointer
//! compiled with -Werror).
//!
//! `LIBCAPS_INCLUDE` names the header directory to check (the installed
//! `PREFIX/include/libcaps`); without it the repository's `include/` is used.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// Functions that the headers provide as `static inline` (the library
/// exports them too, so their addresses differ from the header's copy).
const INLINE_FNS: &[&str] = &[
    "lwkt_initmsg",
    "lwkt_reinitmsg",
    "lwkt_beginmsg",
    "lwkt_forwardmsg",
    "lwkt_waitmsg",
    "lwkt_abortmsg",
    "lwkt_replymsg",
];

/// Public headers, in the order a DragonFly program includes them.
const HEADERS: &[&str] = &[
    "sys/types.h",
    "sys/msgport.h",
    "sys/msgport2.h",
    "libcaps/slaballoc.h",
];

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("..");
    let include = env::var("LIBCAPS_INCLUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("include"));
    println!("cargo:rerun-if-env-changed=LIBCAPS_INCLUDE");
    println!("cargo:rerun-if-changed={}", root.join("src/abi").display());
    println!("cargo:rerun-if-changed={}", root.join("src/capi").display());
    println!("cargo:rerun-if-changed={}", include.display());

    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let decls = out.join("decls.rs");
    let mut text = String::from("use libc::*;\n");
    text += &abi_modules(&root.join("src/abi"));
    text += &extern_block(&root.join("src/capi"));
    fs::write(&decls, text).unwrap();

    let thread_defined = defines_field(&root, "td_pri");
    let globaldata_defined = fs::read_to_string(root.join("src/abi/globaldata.rs"))
        .map(|s| s.contains("pub gd_slab"))
        .unwrap_or(false);
    let mut cfg = ctest2::TestGenerator::new();
    cfg.include(&include);
    for h in HEADERS {
        cfg.header(h);
    }
    cfg.flag("-Wno-unused-parameter")
        .type_name(|ty, is_struct, is_union| {
            if is_struct {
                format!("struct {ty}")
            } else if is_union {
                format!("union {ty}")
            } else {
                ty.to_string()
            }
        })
        .skip_fn_ptrcheck(|name| INLINE_FNS.contains(&name))
        .skip_struct(move |name| {
            (name == "thread" && !thread_defined) || (name == "globaldata" && !globaldata_defined)
        });
    cfg.generate(&decls, "all.rs");
}

/// Has `struct thread` grown real fields yet (the thread subsystem)?
fn defines_field(root: &Path, field: &str) -> bool {
    fs::read_to_string(root.join("src/abi/sys_thread.rs"))
        .map(|s| s.contains(field))
        .unwrap_or(false)
}

/// Every `src/abi/NAME.rs` as an inline `pub mod NAME { ... }`, glob
/// re-exported, so the generated test sees every type by its C name.
fn abi_modules(dir: &Path) -> String {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .filter(|p| p.file_stem().is_some_and(|s| s != "mod"))
        .collect();
    names.sort();
    let mut s = String::new();
    for path in names {
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        let body: String = fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//!") && !l.starts_with("#!["))
            .map(|l| format!("{l}\n"))
            .collect();
        writeln!(
            s,
            "#[allow(unused_imports)]\npub mod {stem} {{\n{body}}}\npub use {stem}::*;"
        )
        .unwrap();
    }
    s
}

/// An `extern "C"` block declaring every `pub unsafe extern "C" fn` of the
/// C API modules, with the signature as written in Rust.
fn extern_block(dir: &Path) -> String {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    let mut s = String::from("extern \"C\" {\n");
    for f in files {
        let text = fs::read_to_string(f).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("pub unsafe extern \"C\" fn ") {
            let sig_start = i + "pub unsafe extern \"C\" ".len();
            let body = rest[sig_start..].find('{').expect("fn without body") + sig_start;
            let sig: Vec<&str> = rest[sig_start..body].split_whitespace().collect();
            let sig = sig
                .join(" ")
                .replace("( ", "(")
                .replace(", )", ")")
                .replace(",)", ")");
            writeln!(s, "    pub {sig};").unwrap();
            rest = &rest[body..];
        }
    }
    s + "}\n"
}
