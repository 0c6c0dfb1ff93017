//! The machine-dependent context switch.
//!
//! A switched-out thread is nothing but a stack pointer (`td_sp`): the
//! switch pushes the callee-saved registers on the old stack, stores the
//! stack pointer, loads the new one, pops the new thread's registers and
//! returns into it. Everything caller-saved has already been saved by the
//! compiler around the call, so nothing else needs to move. On x86_64 the
//! switch is inline asm that declares every register it may name
//! clobbered: the compiler keeps only what is live across it (usually in
//! its own prologue), the asm saves `rbx`, `rbp` and its resume address,
//! and the new thread is entered with a jump to its resume address.
//!
//! The floating-point control state is callee-saved too (x86_64: the
//! MXCSR control bits and the x87 control word; aarch64: FPCR), so it
//! belongs to the thread: the switch saves it with the registers and
//! loads the new thread's. On x86_64 the load is unconditional (as
//! Boost.Context's `jump_fcontext` does): reading the saved words back
//! to compare them cost more than `ldmxcsr` + `fldcw` on the benchmark
//! VM (AMD EPYC, Zen 4: 9.3 → 8.2 ns per `lwkt_switch`), and MXCSR's
//! exception flags become the thread's own as well. On aarch64 FPCR is
//! written only when it differs (`msr fpcr` may synchronise the core).
//! That block is marked "FP control" below. A new thread starts with the state the thread package
//! started with ([`capture_fp_start`]). errno is switched in Rust
//! (`lwkt::sched::switch_to`, with [`errno_swap`]), not in
//! the assembly: saved and loaded unconditionally, one offset load and
//! no branch.
//!
//! On x86_64 the exported entry points that may block
//! ([`blocking_entry`]) run their bodies from one `call` in `imp::gate`
//! and return to their C caller with an indirect jump: a thread resumed
//! by a switch then returns from its body to the address the
//! return-stack predictor holds, whichever entry point the thread
//! switched away from blocked in. `lwkt_switch` and `lwkt_yield`
//! ([`blocking_entry_via`]) load their body's address from a static
//! instead, chosen once before the first switch
//! (`lwkt::sched::SWITCH_BODY`: without a sanitizer runtime, a body
//! that never looks for one).
//!
//! The last switched-out thread: on x86_64 each kernel thread (each
//! cpu) records, in an initial-exec TLS pair of the C shim
//! (`__libcaps_swlast`), the thread it last switched away from and the
//! stack pointer saved in that thread's `td_sp`. A switch to that
//! thread takes the stack pointer from the record (two threads taking
//! turns: every switch), so that the loads of the new thread's frame
//! need not wait for the run queue's head and its `td_sp`. The
//! invariant: the record is empty or names a thread that is not running
//! and whose `td_sp` is the pointer recorded. It is kept in one place,
//! this module: every switch between threads ([`switch_threads`])
//! records the thread it leaves, which nothing but the next switch
//! resumes; a thread that leaves for good ([`jump_thread`],
//! [`switch_threads_exit`]) empties it, and `lwkt_free_thread` of a
//! switched-out thread that never exited takes it out of the record
//! ([`forget_thread`]), so a retired thread, whose structure may be set
//! up anew with another `td_sp`, is never recorded and the thread
//! resumed is not left recorded while it runs. Switches to
//! and from a cpu's boot stack ([`switch`]) are not between threads
//! and do not touch it. Debug builds check it at every switch
//! ([`last_switched_ok`]).
//!
//! A new thread's stack is prepared by [`init_stack`] so that the first
//! switch into it "returns" into the architecture's `trampoline`, which enters
//! `start(func, arg)` (on x86_64 with a jump, leaving the return stack
//! buffer balanced); `start` never returns. An exiting thread, which
//! never runs again, leaves with [`jump_thread`]: the second half of the switch
//! alone, nothing of it saved.

use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::abi::thread;

/// Entry of a new thread: `start(func, arg)` (never returns).
pub type StartFn = unsafe extern "C" fn(*mut c_void, *mut c_void) -> !;

/// The floating-point control state new threads start with: the word
/// the switch keeps in a thread's frame (x86_64: MXCSR in the low half,
/// x87 control word above it; aarch64: FPCR). Until [`capture_fp_start`]
/// runs, the ABI's initial state.
static FP_START: AtomicU64 = AtomicU64::new(imp::FP_DEFAULT);

/// errno's offset from the thread pointer. glibc's `errno` is
/// initial-exec TLS of libc.so, which is loaded with the program, so it
/// sits at the same offset from the thread pointer in every thread: the
/// switch reaches the running kernel thread's `errno` with one load of
/// this offset and one thread-pointer-relative access (no call, no
/// per-cpu pointer to follow).
static ERRNO_OFF: AtomicUsize = AtomicUsize::new(0);

/// Record `ERRNO_OFF` (when the thread package starts; idempotent).
pub fn errno_init() {
    // SAFETY: __errno_location has no preconditions.
    let e = unsafe { libc::__errno_location() } as usize;
    ERRNO_OFF.store(e.wrapping_sub(imp::thread_pointer()), Ordering::Relaxed);
}

/// The running kernel thread's `errno`.
pub fn errno_get() -> c_int {
    // SAFETY: __errno_location has no preconditions and returns this
    // kernel thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Set the running kernel thread's `errno` (after `errno_init`).
#[inline(always)]
pub fn errno_set(v: c_int) {
    // SAFETY: errno_init ran when the thread package started, before
    // anything that switches errno.
    unsafe {
        imp::errno_exchange(v);
    }
}

/// Store the running kernel thread's `errno` in `*save` and set it to
/// `v` (the switch: the old thread's saved, the new one's loaded), with
/// one load of the offset.
///
/// # Safety
/// `save` must be writable.
#[inline(always)]
pub unsafe fn errno_swap(save: *mut c_int, v: c_int) {
    // SAFETY: the offset leads to this thread's errno (see ERRNO_OFF);
    // `save` per the contract.
    unsafe { *save = imp::errno_exchange(v) }
}

/// Record the calling kernel thread's floating-point control state as
/// the one new threads start with (called when the thread package
/// starts, on cpu 0).
pub fn capture_fp_start() {
    FP_START.store(imp::fp_control(), Ordering::Relaxed);
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::StartFn;
    use core::ffi::{c_char, c_int, c_void};

    /// The first half of every switch, as asm text: the running thread's
    /// `rbp`, `rbx`, resume point (label `2`, after the switch) and FP
    /// control (MXCSR at `[rsp]`, x87 control word at `[rsp + 4]`)
    /// pushed on its stack; `rsp` is then what its `td_sp` gets.
    macro_rules! save_frame {
        () => {
            concat!(
                "push rbp\n",
                "push rbx\n",
                "lea rax, [rip + 2f]\n",
                "push rax\n",
                "sub rsp, 8\n",
                "stmxcsr [rsp]\n",
                "fnstcw [rsp + 4]\n",
            )
        };
    }

    /// The second half, once `rsp` is the new thread's saved stack
    /// pointer: its FP control (see the module comment), `rbx` and
    /// `rbp`, then a jump to its resume point (on the stack it had
    /// there: the resume point needs no instruction of its own).
    macro_rules! load_frame {
        () => {
            concat!(
                "ldmxcsr [rsp]\n",
                "fldcw [rsp + 4]\n",
                "mov rax, [rsp + 8]\n",
                "mov rbx, [rsp + 16]\n",
                "mov rbp, [rsp + 24]\n",
                "add rsp, 32\n",
                "jmp rax\n",
            )
        };
    }

    /// A switch from `$from` to `$into` (in registers, named `{from}` and
    /// `{into}` in the text; `{off}` is `$off`) whose instructions are
    /// `$text`, which must end in a jump to the new thread: the resume
    /// point (label `2`) and the operands every switch has. Every
    /// register the text may change is declared clobbered, except `rbx`
    /// and `rbp`, which it saves and restores itself; `rax`, `r12` and
    /// `r13`–`r15` are plain outputs, so no input shares them.
    ///
    /// From the first instruction to the resume point the stack is not
    /// the one the enclosing function's unwind information describes
    /// (pushes, then the other thread's): an unwinder that starts there
    /// (a signal handler's backtrace()) stops instead of reading return
    /// addresses from the wrong words; at the resume point of the thread
    /// switched away from, the stack is again the one the unwind
    /// information says.
    macro_rules! switch_asm {
        ($from:expr, $into:expr, $off:expr, $($text:expr),+ $(,)?) => {
            core::arch::asm!(
                ".cfi_remember_state",
                ".cfi_undefined rip",
                $($text,)+
                "2:",
                ".cfi_restore_state",
                from = in(reg) $from,
                into = in(reg) $into,
                off = const $off,
                out("rax") _,
                out("r12") _,
                out("r13") _,
                out("r14") _,
                out("r15") _,
                clobber_abi("C"),
            )
        };
    }

    /// Store the running thread's resume point on its stack and its stack
    /// pointer in `*save`, switch to the stack `to` and jump to the resume
    /// point saved there.
    ///
    /// Inline, so that the compiler saves only the callee-saved registers
    /// it keeps live across the switch (the asm clobbers every register
    /// it may name): the switch itself saves the two it may not name
    /// (`rbx`, `rbp`), the FP control word and the resume address, and
    /// resumes with an indirect jump (predicted like any branch) rather
    /// than a `ret` that would return to another thread's call site.
    /// Saved frame, from `*save` up: FP control (MXCSR at +0, x87 control
    /// word at +4), resume address, `rbx`, `rbp`.
    ///
    /// # Safety
    /// `to` must be a stack pointer produced by a previous switch away from
    /// a thread that is not running, or by [`super::init_stack`].
    #[inline(always)]
    pub unsafe fn switch(save: *mut *mut c_char, to: *mut c_char) {
        // SAFETY: per the contract (the slot to save into at offset 0 of
        // `save`, the stack pointer to load at offset 0 of `&to`).
        unsafe { switch_at::<0>(save.cast(), (&raw const to).cast()) }
    }

    /// [`switch`] with the save slot and the new stack pointer at offset
    /// `OFF` of `from` and `into` (two threads' `td_sp`, which the asm
    /// then addresses itself: no field address to compute, no load
    /// before it).
    ///
    /// # Safety
    /// `from + OFF` is the writable save slot; `into + OFF` holds a stack
    /// pointer as [`switch`] wants `to`.
    #[inline(always)]
    pub unsafe fn switch_at<const OFF: usize>(from: *mut u8, into: *const u8) {
        // SAFETY: per the contract; every register the asm may change is
        // declared clobbered, except rbx and rbp, which it saves and
        // restores itself. rax, which it uses before the last read of an
        // input, is a plain output: no input shares it.
        unsafe {
            switch_asm!(
                from,
                into,
                OFF,
                save_frame!(),
                "mov [{from} + {off}], rsp",
                "mov rsp, [{into} + {off}]",
                load_frame!(),
            );
        }
    }

    /// [`switch_at`] from one thread to another (`from` and `into` are
    /// the two threads, `OFF` the offset of their `td_sp`), through the
    /// last switched-out thread of this kernel thread
    /// (`__libcaps_swlast`, see "The last switched-out thread" in the
    /// module documentation): when `into` is that thread, its stack
    /// pointer is taken from there, a load that waits only for the TLS
    /// offset, not for `into` (the run queue's head) nor its `td_sp`;
    /// the compare with `into` is a predicted branch, off that chain.
    /// Either way `from` and the stack pointer saved in its `td_sp` are
    /// recorded there.
    ///
    /// # Safety
    /// As [`switch_at`]; `from` and `into` are threads, and the record
    /// holds NULL or a thread that is not running with the stack pointer
    /// its `td_sp` holds.
    #[inline(always)]
    pub unsafe fn switch_threads_at<const OFF: usize>(from: *mut u8, into: *const u8) {
        // SAFETY: per the contract, as in switch_at; r12 (clobbered,
        // so no input shares it) holds the record's TLS offset.
        unsafe {
            switch_asm!(
                from,
                into,
                OFF,
                "mov r12, qword ptr [rip + __libcaps_swlast@GOTTPOFF]",
                save_frame!(),
                "mov [{from} + {off}], rsp",
                // The new stack pointer: the record's when `into` is its
                // thread, else `into`'s td_sp; the record then says
                // `from` and its stack pointer.
                "cmp {into}, qword ptr fs:[r12]",
                "jne 3f",
                "mov rax, qword ptr fs:[r12 + 8]",
                "mov qword ptr fs:[r12], {from}",
                "mov qword ptr fs:[r12 + 8], rsp",
                "mov rsp, rax",
                // The new thread's frame, once per way in: no jump
                // between the two.
                load_frame!(),
                "3:",
                "mov qword ptr fs:[r12], {from}",
                "mov qword ptr fs:[r12 + 8], rsp",
                "mov rsp, [{into} + {off}]",
                load_frame!(),
            );
        }
    }

    /// Empty the record of the last switched-out thread (a thread leaves
    /// for good without being recorded).
    #[inline(always)]
    pub fn forget_last() {
        // SAFETY: stores NULL into this kernel thread's record, an
        // initial-exec TLS variable of the library (as `mycpu`).
        unsafe {
            core::arch::asm!(
                "mov {o}, qword ptr [rip + __libcaps_swlast@GOTTPOFF]",
                "mov qword ptr fs:[{o}], 0",
                o = out(reg) _,
                options(nostack, preserves_flags),
            );
        }
    }

    /// The record of the last switched-out thread: the thread (NULL if
    /// none) and its stack pointer.
    #[inline(always)]
    pub fn last_switched() -> (*const u8, *mut c_char) {
        let (td, sp): (*const u8, *mut c_char);
        // SAFETY: reads this kernel thread's record (see forget_last).
        unsafe {
            core::arch::asm!(
                "mov {o}, qword ptr [rip + __libcaps_swlast@GOTTPOFF]",
                "mov {t}, qword ptr fs:[{o}]",
                "mov {s}, qword ptr fs:[{o} + 8]",
                o = out(reg) _,
                t = out(reg) td,
                s = out(reg) sp,
                options(nostack, readonly, preserves_flags),
            );
        }
        (td, sp)
    }

    /// Resume the switched-out thread whose stack pointer is at offset
    /// `OFF` of `into` (a thread's `td_sp`, loaded by the asm itself),
    /// saving nothing of the running one, which never runs again (an
    /// exiting thread): the second half of [`switch_at`] alone.
    ///
    /// # Safety
    /// `into + OFF` holds a stack pointer as [`switch`] wants `to`;
    /// nothing may ever resume the caller.
    #[inline(always)]
    pub unsafe fn jump_at<const OFF: usize>(into: *const u8) -> ! {
        // SAFETY: per the contract; the frame there is the one switch
        // saved (or init_stack prepared), which the code at its resume
        // address pops.
        unsafe {
            core::arch::asm!(
                // As in switch_at: no unwinding through the other stack
                // (the state restored after it for whatever code the
                // compiler places behind this block).
                ".cfi_remember_state",
                ".cfi_undefined rip",
                // The exiting thread is not recorded, and the record
                // must not name `into` once it runs: emptied.
                "mov rax, qword ptr [rip + __libcaps_swlast@GOTTPOFF]",
                "mov qword ptr fs:[rax], 0",
                "mov rsp, [rcx + {off}]",
                load_frame!(),
                ".cfi_restore_state",
                // In rcx, not rax, which the asm uses before reading it.
                in("rcx") into,
                off = const OFF,
                options(noreturn),
            );
        }
    }

    /// The one call site through which the exported blocking entry
    /// points ([`super::blocking_entry`]) run their bodies: entered by a
    /// jump with the body's address in `rax` and the C caller's return
    /// address on top of the stack, it calls the body (keeping the ABI's
    /// stack alignment) and goes back to the C caller with an indirect
    /// jump instead of a `ret`.
    ///
    /// Why: a thread blocked in one of these bodies resumes on another
    /// thread's call chain, as far as the cpu's return-stack predictor
    /// knows. With every blocking body called from this one `call`, the
    /// body's `ret` after the switch goes where the predictor says (the
    /// thread switched away from was called from here too), and the
    /// return to the C caller is predicted from history like any
    /// indirect jump (Boost's `jump_fcontext` leaves the same way). Only
    /// the return address is at stake, but a mispredicted `ret` costs
    /// about a whole switch on the benchmark VM (`ctxsw_bench`'s
    /// two-call-site row: 20 ns per switch without the gate, 11 with).
    ///
    /// The CFI notes let debuggers and unwinders walk through it: the
    /// body's return address is in here, the caller's above it.
    ///
    /// # Safety
    /// Never called: only jumped to by a blocking entry point, with the
    /// body, an `extern "C"` function taking the entry point's
    /// arguments, in `rax`.
    #[unsafe(naked)]
    pub unsafe extern "C" fn gate() {
        core::arch::naked_asm!(
            ".cfi_startproc",
            "sub rsp, 8",
            ".cfi_adjust_cfa_offset 8",
            "call rax",
            "add rsp, 8",
            ".cfi_adjust_cfa_offset -8",
            "pop rcx",
            ".cfi_adjust_cfa_offset -8",
            ".cfi_register rip, rcx",
            "jmp rcx",
            ".cfi_endproc",
        )
    }

    /// The thread pointer (`fs` base; glibc keeps it at `fs:0`).
    #[inline(always)]
    pub fn thread_pointer() -> usize {
        let tp: usize;
        // SAFETY: reads the TCB's self pointer, always mapped.
        unsafe {
            core::arch::asm!(
                "mov {}, qword ptr fs:[0]",
                out(reg) tp,
                options(nostack, readonly, preserves_flags, pure),
            );
        }
        tp
    }

    /// Set the running kernel thread's `errno` to `v` and return what
    /// it was, in one asm block: `ERRNO_OFF` loaded with one
    /// `rip`-relative instruction (a load of the static in Rust takes its
    /// address from the GOT, which the linker turns into an `lea`: one
    /// instruction more on every switch), then `fs`-relative accesses.
    ///
    /// # Safety
    /// `ERRNO_OFF` holds errno's offset (`errno_init` has run).
    #[inline(always)]
    pub unsafe fn errno_exchange(v: c_int) -> c_int {
        let old: c_int;
        // SAFETY: per the contract; the static is an aligned word read
        // as a relaxed atomic load is on x86_64 (it changes only in
        // `errno_init`, before the first switch).
        unsafe {
            core::arch::asm!(
                "mov {o}, qword ptr [rip + {off}]",
                "mov {old:e}, dword ptr fs:[{o}]",
                "mov dword ptr fs:[{o}], {v:e}",
                off = sym super::ERRNO_OFF,
                o = out(reg) _,
                old = out(reg) old,
                v = in(reg) v,
                options(nostack, preserves_flags),
            );
        }
        old
    }

    /// MXCSR 0x1f80 (all exceptions masked, round to nearest) and x87
    /// control word 0x037f: the SysV initial state.
    pub const FP_DEFAULT: u64 = 0x1f80 | (0x037f << 32);

    /// The calling thread's FP control state, as the switch saves it.
    pub fn fp_control() -> u64 {
        let mut mxcsr: u32 = 0;
        let mut cw: u16 = 0;
        // SAFETY: stores the two control words into the locals.
        unsafe {
            core::arch::asm!(
                "stmxcsr [{m}]",
                "fnstcw [{c}]",
                m = in(reg) &raw mut mxcsr,
                c = in(reg) &raw mut cw,
                options(nostack, preserves_flags),
            );
        }
        u64::from(mxcsr) | (u64::from(cw) << 32)
    }

    /// First code of every new thread, entered by the first switch to
    /// it with `func`, `arg` and `start` on the stack: `start(func, arg)`
    /// on an aligned stack. `start` never returns.
    ///
    /// `start` is entered with a jump over a return address pushed by
    /// hand (into this function, whose unwind information says it has
    /// no caller, so stack walks end here), not with a `call`: a call
    /// would leave an entry on the cpu's return stack buffer that no
    /// `ret` ever takes, and the thread resumed when this one exits
    /// would then mispredict its next two returns (the exit path adds
    /// the other entry unless it is inlined into `start`, as
    /// `lwkt::thread::thread_start` does). A return address of 0 would
    /// do for the return stack but not for debuggers: gdb shows a last
    /// frame `?? ()` above `start`, and ASan, finding fewer than three
    /// frames with the DWARF unwinder in a thread function's report,
    /// walks `rbp` instead.
    ///
    /// # Safety
    /// Never called: only entered by the first switch to a stack
    /// prepared by [`init_stack`], with the start function and its
    /// arguments where it put them.
    #[unsafe(naked)]
    unsafe extern "C" fn trampoline() {
        core::arch::naked_asm!(
            // The outermost frame: no caller to unwind to (gdb and the
            // DWARF unwinders stop here, as at glibc's thread start).
            ".cfi_startproc",
            ".cfi_undefined rip",
            // func and arg came in the frame's rbx and rbp words.
            "mov rdi, rbx",
            "mov rsi, rbp",
            "pop rax",
            "xor ebp, ebp",
            "and rsp, -16",
            // `start`'s return address, pushed rather than called.
            "lea rcx, [rip + 2f]",
            "push rcx",
            "jmp rax",
            "2:",
            "ud2",
            ".cfi_endproc",
        )
    }

    /// Words below the top of a new stack, in the order of a switched-out
    /// thread's frame: the FP control word, the resume address (the
    /// trampoline), func and arg in the words the switch loads into rbx and
    /// rbp, then start (which the trampoline pops) and one word of padding.
    const FRAME_WORDS: usize = 6;

    /// # Safety
    /// `top` must be the 16-byte aligned end of a writable stack with room
    /// for [`FRAME_WORDS`] words.
    pub unsafe fn init_stack(
        top: *mut c_char,
        start: StartFn,
        func: *mut c_void,
        arg: *mut c_void,
        fp: u64,
    ) -> *mut c_char {
        let sp = top.cast::<usize>();
        let frame: [usize; FRAME_WORDS] = [
            fp as usize,                      // MXCSR, x87 CW
            trampoline as *const () as usize, // resume address
            func as usize,
            arg as usize,
            start as usize,
            0,
        ];
        // SAFETY: the caller guarantees FRAME_WORDS words below `top` are
        // writable.
        unsafe {
            let base = sp.sub(FRAME_WORDS);
            core::ptr::copy_nonoverlapping(frame.as_ptr(), base, FRAME_WORDS);
            base.cast()
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod imp {
    use super::StartFn;
    use core::ffi::{c_char, c_int, c_void};

    /// As on x86_64: x19-x28, x29 (fp), x30 (lr) and d8-d15 are the
    /// callee-saved registers of AAPCS64, and FPCR its FP control state.
    ///
    /// # Safety
    /// As on x86_64.
    #[unsafe(naked)]
    pub unsafe extern "C" fn switch(save: *mut *mut c_char, to: *mut c_char) {
        core::arch::naked_asm!(
            "sub sp, sp, #176",
            "stp x19, x20, [sp, #0]",
            "stp x21, x22, [sp, #16]",
            "stp x23, x24, [sp, #32]",
            "stp x25, x26, [sp, #48]",
            "stp x27, x28, [sp, #64]",
            "stp x29, x30, [sp, #80]",
            "stp d8, d9, [sp, #96]",
            "stp d10, d11, [sp, #112]",
            "stp d12, d13, [sp, #128]",
            "stp d14, d15, [sp, #144]",
            // FP control: FPCR at [sp, #160], the old value kept in x9.
            "mrs x9, fpcr",
            "str x9, [sp, #160]",
            "mov x10, sp",
            "str x10, [x0]",
            "mov sp, x1",
            // FP control: write FPCR only if the new thread's differs.
            "ldr x10, [sp, #160]",
            "cmp x9, x10",
            "b.eq 2f",
            "msr fpcr, x10",
            "2:",
            "ldp x19, x20, [sp, #0]",
            "ldp x21, x22, [sp, #16]",
            "ldp x23, x24, [sp, #32]",
            "ldp x25, x26, [sp, #48]",
            "ldp x27, x28, [sp, #64]",
            "ldp x29, x30, [sp, #80]",
            "ldp d8, d9, [sp, #96]",
            "ldp d10, d11, [sp, #112]",
            "ldp d12, d13, [sp, #128]",
            "ldp d14, d15, [sp, #144]",
            "add sp, sp, #176",
            "ret",
        )
    }

    /// As on x86_64, through [`switch`] with a save slot nobody reads.
    ///
    /// # Safety
    /// As on x86_64.
    #[inline(always)]
    pub unsafe fn jump(to: *mut c_char) -> ! {
        let mut dead: *mut c_char = core::ptr::null_mut();
        // SAFETY: per the contract; `dead` is never switched back to.
        unsafe { switch(&raw mut dead, to) };
        crate::fatal!("lwkt_exit", "an exited thread was resumed")
    }

    /// The thread pointer (`tpidr_el0`).
    #[inline(always)]
    pub fn thread_pointer() -> usize {
        let tp: usize;
        // SAFETY: reads a system register that EL0 may read.
        unsafe {
            core::arch::asm!("mrs {}, tpidr_el0", out(reg) tp, options(nomem, nostack, pure));
        }
        tp
    }

    /// Set the running kernel thread's `errno` to `v` and return what
    /// it was.
    ///
    /// # Safety
    /// `ERRNO_OFF` holds errno's offset (`errno_init` has run).
    #[inline(always)]
    pub unsafe fn errno_exchange(v: c_int) -> c_int {
        let off = super::ERRNO_OFF.load(core::sync::atomic::Ordering::Relaxed);
        // SAFETY: per the contract.
        unsafe {
            let old = tls_read(off);
            tls_write(off, v);
            old
        }
    }

    /// The `int` at offset `off` from the thread pointer.
    ///
    /// # Safety
    /// `off` must be the offset of an `int` of this thread's static TLS.
    #[inline(always)]
    pub unsafe fn tls_read(off: usize) -> c_int {
        // SAFETY: per the contract.
        unsafe { *(thread_pointer().wrapping_add(off) as *const c_int) }
    }

    /// Store `v` in the `int` at offset `off` from the thread pointer.
    ///
    /// # Safety
    /// As [`tls_read`].
    #[inline(always)]
    pub unsafe fn tls_write(off: usize, v: c_int) {
        // SAFETY: per the contract.
        unsafe { *(thread_pointer().wrapping_add(off) as *mut c_int) = v }
    }

    /// FPCR 0: round to nearest, no traps, IEEE behaviour.
    pub const FP_DEFAULT: u64 = 0;

    /// The calling thread's FPCR.
    pub fn fp_control() -> u64 {
        let v: u64;
        // SAFETY: reads a system register that EL0 may read.
        unsafe { core::arch::asm!("mrs {0}, fpcr", out(reg) v, options(nomem, nostack)) };
        v
    }

    /// First code of every new thread: `start(x19, x20)`.
    ///
    /// # Safety
    /// Never called: only entered by the first switch to a stack
    /// prepared by [`init_stack`], with the start function and its
    /// arguments in the callee-saved registers it put there.
    #[unsafe(naked)]
    unsafe extern "C" fn trampoline() {
        core::arch::naked_asm!(
            "mov x0, x19",
            "mov x1, x20",
            "mov x29, xzr",
            "mov x30, xzr",
            "blr x21",
            "brk #0",
        )
    }

    /// 20 register words, the FPCR word and one word of padding (the
    /// stack stays 16-byte aligned).
    const FRAME_WORDS: usize = 22;

    /// # Safety
    /// As on x86_64.
    pub unsafe fn init_stack(
        top: *mut c_char,
        start: StartFn,
        func: *mut c_void,
        arg: *mut c_void,
        fp: u64,
    ) -> *mut c_char {
        let mut frame = [0usize; FRAME_WORDS];
        frame[0] = func as usize; // x19
        frame[1] = arg as usize; // x20
        frame[2] = start as usize; // x21
        frame[11] = trampoline as *const () as usize; // x30
        frame[20] = fp as usize; // FPCR
        // SAFETY: the caller guarantees the words below `top` are writable.
        unsafe {
            let base = top.cast::<usize>().sub(FRAME_WORDS);
            core::ptr::copy_nonoverlapping(frame.as_ptr(), base, FRAME_WORDS);
            base.cast()
        }
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("libcaps: no context switch for this architecture (x86_64 and aarch64 only)");

/// Switch stacks (see the module documentation).
///
/// # Safety
/// `save` must be writable; `to` must come from a switch or [`init_stack`]
/// of a thread that is not running.
#[inline(always)]
pub unsafe fn switch(save: *mut *mut c_char, to: *mut c_char) {
    // SAFETY: forwarded contract.
    unsafe { imp::switch(save, to) }
}

/// [`switch`] from thread `td` to thread `ntd`: the save slot and the
/// stack pointer loaded are their `td_sp`, addressed by the switch
/// itself. On x86_64 `td` becomes the last switched-out thread (module
/// documentation).
///
/// # Safety
/// As [`switch`], with `&(*td).td_sp` as `save` and `(*ntd).td_sp` as
/// `to`; `td` has not exited (an exited thread leaves with
/// [`switch_threads_exit`] or [`jump_thread`]).
#[inline(always)]
pub unsafe fn switch_threads(td: *mut thread, ntd: *const thread) {
    // SAFETY: forwarded contract; the record of the last switched-out
    // thread is kept as its invariant says (module documentation).
    #[cfg(target_arch = "x86_64")]
    unsafe {
        imp::switch_threads_at::<{ core::mem::offset_of!(thread, td_sp) }>(td.cast(), ntd.cast())
    }
    // SAFETY: forwarded contract.
    #[cfg(not(target_arch = "x86_64"))]
    unsafe {
        imp::switch(&raw mut (*td).td_sp, (*ntd).td_sp)
    }
}

/// [`switch_threads`] from `td`, which has exited: its stack pointer is
/// saved (a sanitizer's switch) but not recorded as the last
/// switched-out thread's, since `td` may be set up anew.
///
/// # Safety
/// As [`switch_threads`]; nothing may ever resume `td` as it was.
#[inline(always)]
pub unsafe fn switch_threads_exit(td: *mut thread, ntd: *const thread) {
    // SAFETY: forwarded contract.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        imp::forget_last();
        imp::switch_at::<{ core::mem::offset_of!(thread, td_sp) }>(td.cast(), ntd.cast())
    }
    // SAFETY: forwarded contract.
    #[cfg(not(target_arch = "x86_64"))]
    unsafe {
        imp::switch(&raw mut (*td).td_sp, (*ntd).td_sp)
    }
}

/// `td`, a thread of this kernel thread (cpu) that is not running, is
/// retired without exiting (`lwkt_free_thread`): the record of the last
/// switched-out thread no longer names it, since its structure may be
/// set up anew with another `td_sp` (module documentation).
pub fn forget_thread(td: *const thread) {
    #[cfg(target_arch = "x86_64")]
    if imp::last_switched().0 == td.cast() {
        imp::forget_last();
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = td;
}

/// Whether the record of the last switched-out thread is what its
/// invariant says, seen from a switch from `td` (running) to `ntd`: it
/// names neither `td` nor a thread whose `td_sp` differs from the one
/// recorded (a debug assertion of every switch).
///
/// # Safety
/// `td` and `ntd` are valid threads.
pub unsafe fn last_switched_ok(td: *const thread, ntd: *const thread) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let (last, sp) = imp::last_switched();
        // SAFETY: per the contract.
        last != td.cast() && (last != ntd.cast() || sp == unsafe { (*ntd).td_sp })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (td, ntd);
        true
    }
}

/// Resume thread `ntd` (its `td_sp`, loaded by the jump itself) without
/// saving the running one, which never runs again (see the module
/// documentation).
///
/// # Safety
/// `(*ntd).td_sp` as `to` for [`switch`]; nothing may ever resume the
/// caller.
#[inline(always)]
pub unsafe fn jump_thread(ntd: *const thread) -> ! {
    // SAFETY: forwarded contract.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        imp::jump_at::<{ core::mem::offset_of!(thread, td_sp) }>(ntd.cast())
    }
    // SAFETY: forwarded contract.
    #[cfg(not(target_arch = "x86_64"))]
    unsafe {
        imp::jump((*ntd).td_sp)
    }
}

/// Prepare a stack whose top is `top` so that switching to the returned
/// stack pointer runs `start(func, arg)` with the floating-point control
/// state of [`capture_fp_start`].
///
/// # Safety
/// `top` must be the 16-byte aligned end of a writable stack of at least
/// 256 bytes.
pub unsafe fn init_stack(
    top: *mut c_char,
    start: StartFn,
    func: *mut c_void,
    arg: *mut c_void,
) -> *mut c_char {
    let fp = FP_START.load(Ordering::Relaxed);
    // SAFETY: forwarded contract.
    unsafe { imp::init_stack(top, start, func, arg, fp) }
}

/// The body of an exported entry point that may block: `naked` wrapper
/// around `$body` (an `extern "C"` function of the same signature). On
/// x86_64 it runs `$body` through the one call site of the gate (see
/// `imp::gate`: the return after a switch is predicted); elsewhere it
/// jumps to `$body`.
#[cfg(target_arch = "x86_64")]
macro_rules! blocking_entry {
    ($body:path) => {
        $crate::lwkt::arch::gate_stub!("lea rax, [rip + {target}]", $body)
    };
}

/// The stub of [`blocking_entry`] and [`blocking_entry_via`]: `$load`
/// puts the body's address in `rax` (from `{target}`, 7 bytes either
/// way), then the jump to the gate.
#[cfg(target_arch = "x86_64")]
macro_rules! gate_stub {
    ($load:literal, $target:path) => {
        core::arch::naked_asm!(
            // CFI of its own (the caller's return address on top, as at
            // any entry): an unwinder interrupted here by a signal finds
            // the caller.
            ".cfi_startproc",
            $load,
            "jmp {gate}",
            ".cfi_endproc",
            target = sym $target,
            gate = sym $crate::lwkt::arch::gate_fn,
        )
    };
}

/// As on x86_64, without the gate.
#[cfg(target_arch = "aarch64")]
macro_rules! blocking_entry {
    ($body:path) => {
        core::arch::naked_asm!(".cfi_startproc", "b {body}", ".cfi_endproc", body = sym $body)
    };
}

/// [`blocking_entry`] whose body is the function whose address the
/// static `$slot` (an `AtomicPtr<()>`) holds when it is called (set
/// before the first call; `$default` is what it holds at first). The
/// stub has the size of [`blocking_entry`]'s: a load in place of the
/// address computation (7 bytes each), then the jump to the gate.
#[cfg(target_arch = "x86_64")]
macro_rules! blocking_entry_via {
    ($slot:path, $default:path) => {
        $crate::lwkt::arch::gate_stub!("mov rax, qword ptr [rip + {target}]", $slot)
    };
}

/// As [`blocking_entry`] with `$default` (elsewhere than x86_64).
#[cfg(target_arch = "aarch64")]
macro_rules! blocking_entry_via {
    ($slot:path, $default:path) => {
        $crate::lwkt::arch::blocking_entry!($default)
    };
}

#[cfg(target_arch = "x86_64")]
pub(crate) use gate_stub;
pub(crate) use {blocking_entry, blocking_entry_via};

/// The gate of [`blocking_entry`] (x86_64).
#[cfg(target_arch = "x86_64")]
pub use imp::gate as gate_fn;
