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

/// Functions the headers define as `static inline` (the library may
/// export them too, but the address a C program takes is the header's
/// copy): found by reading the headers.
fn inline_fns(include: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for h in public_headers(include) {
        let text = fs::read_to_string(include.join(&h)).unwrap_or_default();
        for (i, _) in text
            .match_indices("static __inline")
            .chain(text.match_indices("static inline"))
        {
            let rest = &text[i..];
            let Some(paren) = rest.find('(') else {
                continue;
            };
            let head = rest[..paren].trim_end();
            let name = head
                .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("");
            if !name.is_empty() {
                names.push(name.to_string());
            }
        }
    }
    names
}

/// Public headers: every header in `sys/` and `libcaps/` of the include
/// directory (each compiles on its own; `tests/c_tests.rs` checks that).
fn public_headers(include: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for sub in ["sys", "libcaps"] {
        if let Ok(rd) = fs::read_dir(include.join(sub)) {
            for e in rd {
                let name = e.unwrap().file_name().into_string().unwrap();
                if name.ends_with(".h") {
                    v.push(format!("{sub}/{name}"));
                }
            }
        }
    }
    v.sort();
    v
}

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
    let inline = inline_fns(&include);
    assert!(
        inline.iter().any(|f| f == "lwkt_replymsg"),
        "no static inline functions found in {}",
        include.display()
    );
    let mut cfg = ctest2::TestGenerator::new();
    cfg.include(&include);
    cfg.header("sys/types.h");
    for h in public_headers(&include) {
        cfg.header(&h);
    }
    cfg.flag("-Wno-unused-parameter")
        .type_name(|ty, is_struct, is_union| {
            if ty == "caps_type" {
                "enum caps_type".to_string()
            } else if ty == "proc_" {
                "struct proc".to_string()
            } else if is_struct {
                format!("struct {ty}")
            } else if is_union {
                format!("union {ty}")
            } else {
                ty.to_string()
            }
        })
        // `type` is a Rust keyword: the Rust field is `type_`.
        .field_name(|_, field| {
            if field == "type_" {
                "type".to_string()
            } else {
                field.to_string()
            }
        })
        .skip_fn_ptrcheck(move |name| inline.iter().any(|f| f == name))
        // Internal entry points of the C shim (src/capi/shim.c), not in any header.
        .skip_fn(|name| name.starts_with("libcaps_"))
        // ctest2's by-value round trip mis-computes the padding map of a
        // struct with a renamed field (`type_` → `type`) and crashes; its
        // size, alignment, offsets and field types are still checked.
        .skip_roundtrip(|name| name == "caps_port")
        // Opaque: the headers only declare them (nothing to measure).
        .skip_struct(move |name| {
            matches!(name, "proc_" | "pcb" | "md_intr_info")
                || (name == "thread" && !thread_defined)
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
            "#[allow(unused_imports)]\npub mod abi_{stem} {{\n{body}}}\npub use abi_{stem}::*;"
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
