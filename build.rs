//! Build script: generates the struct and prototype part of each public C
//! header with cbindgen, and compiles the C shim. (The shared library is
//! linked by `tools/link-lib.sh`, which gives it its SONAME and exports.)
//!
//! Generated headers go to `$OUT_DIR/gen/`. The committed copies live in
//! `include/libcaps/gen/`; `tests/headers.rs` fails when they drift, and
//! `make headers` (which sets `LIBCAPS_UPDATE_HEADERS=1`) refreshes them.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// One generated header: its name under `gen/`, the Rust files it is made
/// from, the headers it includes, and the items the hand-written part
/// provides itself (`static inline` functions, enums), so they must not be
/// declared twice.
struct GenHeader {
    name: &'static str,
    sources: &'static [&'static str],
    includes: &'static [&'static str],
    handwritten: &'static [&'static str],
    /// How this header spells types that it uses but another header (or
    /// the hand-written part) defines: `("thread", "struct thread")`.
    renames: &'static [(&'static str, &'static str)],
    /// Types to emit even though no generated item refers to them (they
    /// are only used through a typedef the hand-written part provides).
    force: &'static [&'static str],
}

const HEADERS: &[GenHeader] = &[
    GenHeader {
        name: "msgport",
        sources: &["src/abi/msgport.rs", "src/capi/msgport.rs"],
        includes: &["sys/types.h", "stdint.h"],
        handwritten: &[
            "lwkt_initmsg",
            "lwkt_reinitmsg",
            "lwkt_beginmsg",
            "lwkt_forwardmsg",
            "lwkt_waitmsg",
            "lwkt_abortmsg",
            "lwkt_replymsg",
        ],
        renames: &[("thread", "struct thread")],
        force: &[],
    },
    GenHeader {
        name: "caps",
        sources: &["src/abi/caps.rs", "src/capi/caps.rs"],
        includes: &["sys/types.h", "stdint.h"],
        handwritten: &["caps_type", "caps_msg_state_t"],
        renames: &[
            ("thread", "struct thread"),
            ("lwkt_port", "struct lwkt_port"),
            ("lwkt_msg", "struct lwkt_msg"),
            ("lwkt_msg_queue", "struct lwkt_msg_queue"),
            ("caps_type", "enum caps_type"),
        ],
        force: &[],
    },
    GenHeader {
        name: "caps_struct",
        sources: &["src/abi/libcaps_caps_struct.rs", "src/capi/caps_struct.rs"],
        includes: &["sys/types.h", "stdint.h"],
        // The three pointer typedefs come first in the hand-written
        // header: `struct caps_label` uses `caps_struct_t` before cbindgen
        // would define it.
        handwritten: &[
            "caps_msgbuf_getc",
            "caps_msgbuf_putc",
            "caps_label_t",
            "caps_struct_t",
            "caps_msgbuf_t",
        ],
        renames: &[],
        force: &["caps_msgbuf"],
    },
    GenHeader {
        name: "thread",
        sources: &["src/abi/sys_thread.rs", "src/capi/thread.rs"],
        includes: &["sys/types.h", "stdint.h"],
        handwritten: &[],
        renames: &[
            ("globaldata", "struct globaldata"),
            ("lwkt_port", "struct lwkt_port"),
            ("proc_", "struct proc"),
            ("pcb", "struct pcb"),
            ("md_intr_info", "struct md_intr_info"),
        ],
        force: &["lwkt_ipiq", "lwkt_ipiq_t", "ipifunc_t", "lwkt_queue"],
    },
    GenHeader {
        name: "globaldata",
        sources: &["src/abi/libcaps_globaldata.rs", "src/capi/globaldata.rs"],
        includes: &["sys/types.h", "stdint.h"],
        handwritten: &[],
        renames: &[
            ("thread", "struct thread"),
            ("thread_queue", "struct thread_queue"),
            ("lwkt_ipiq", "struct lwkt_ipiq"),
        ],
        force: &["globaldata_t"],
    },
    GenHeader {
        name: "slaballoc",
        sources: &["src/abi/slaballoc.rs", "src/capi/slaballoc.rs"],
        includes: &["sys/types.h", "stdint.h"],
        handwritten: &[],
        renames: &[
            ("thread", "struct thread"),
            ("globaldata", "struct globaldata"),
        ],
        // No prototype uses these, so cbindgen would not emit them.
        force: &["SLChunk", "SLZone", "SLGlobalData", "SLOversized"],
    },
];

fn main() {
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=LIBCAPS_UPDATE_HEADERS");

    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("gen");
    fs::create_dir_all(&out).unwrap();
    let update = env::var_os("LIBCAPS_UPDATE_HEADERS").is_some();

    build_shim(&root);

    for h in HEADERS {
        let text = generate(&root, h);
        fs::write(out.join(format!("{}.h", h.name)), &text).unwrap();
        if update {
            let dst = root
                .join("include/libcaps/gen")
                .join(format!("{}.h", h.name));
            fs::write(dst, &text).unwrap();
        }
    }
}

fn generate(root: &Path, h: &GenHeader) -> String {
    let mut config = cbindgen::Config::from_file(root.join("cbindgen.toml")).unwrap();
    config.include_guard = Some(format!("_LIBCAPS_GEN_{}_H_", h.name.to_uppercase()));
    config.sys_includes = h.includes.iter().map(|s| s.to_string()).collect();
    config
        .export
        .exclude
        .extend(h.handwritten.iter().map(|s| s.to_string()));
    config
        .export
        .include
        .extend(h.force.iter().map(|s| s.to_string()));
    for (rust, c) in h.renames {
        config.export.rename.insert(rust.to_string(), c.to_string());
    }
    let mut builder = cbindgen::Builder::new().with_config(config);
    for src in h.sources {
        println!("cargo:rerun-if-changed={src}");
        builder = builder.with_src(root.join(src));
    }
    let mut buf = Vec::new();
    builder.generate().expect("cbindgen failed").write(&mut buf);
    String::from_utf8(buf).unwrap()
}

/// Compile the C shim (variadic functions, TLS `mycpu`, valgrind client
/// requests, the structure types for gdb); which of its symbols libraries
/// export is `libcaps.map`'s business.
fn build_shim(root: &Path) {
    let src = root.join("src/capi/shim.c");
    println!("cargo:rerun-if-changed={}", src.display());
    let mut build = cc::Build::new();
    build
        .file(&src)
        .warnings(true)
        .extra_warnings(true)
        .flag_if_supported("-Werror");
    // valgrind.h comes with the valgrind package (Debian: `valgrind`).
    // Without it the stack registration calls compile to nothing.
    let vg = Path::new("/usr/include/valgrind/valgrind.h");
    println!("cargo:rerun-if-changed={}", vg.display());
    if vg.exists() {
        build.define("LIBCAPS_HAVE_VALGRIND", None);
    } else {
        println!(
            "cargo:warning=valgrind.h not found: thread stacks will not be registered with valgrind"
        );
    }
    // The shim includes the public headers and carries the debug
    // information of their structures for the gdb extension (always -g:
    // the release build has line tables only).
    build.include(root.join("include")).debug(true);
    build.compile("caps_shim");
}
