# gdb commands for the LWKT threads of libcaps for Linux.
#
# `make install` puts this file where gdb auto-loads it together with the
# library (PREFIX/share/gdb/auto-load/LIBDIR/libcaps.so.1.0.0-gdb.py); for
# a program linked with libcaps.a, load it by hand:
#
#     (gdb) source PREFIX/share/libcaps/libcaps-gdb.py
#
# Commands:
#     info lwkt-threads      every LWKT thread of every virtual cpu
#     lwkt-bt THREAD         backtrace of one thread (address or name)
#     lwkt-bt all            backtraces of every thread
#
# The layouts of `struct thread` and `struct globaldata` come from the debug
# information that the library carries for them (src/capi/shim.c is
# compiled with -g), or from a C program compiled with -g that includes
# <sys/thread.h> (docs/debugging.md). A
# switched-out thread's backtrace is taken from the registers saved on its
# stack by the context switch: they are loaded into the selected kernel
# thread for the `backtrace` and put back right after.

import struct

import gdb

TDF_RUNQ = 0x0002
TDF_EXITED = 0x40000000  # private to libcaps (src/lwkt/thread.rs)
TDPRI_MASK = 31
TDPRI_CRIT = 32
MAX_THREADS = 1000000  # a corrupt list must not loop forever


def _globaldata_type():
    try:
        return gdb.lookup_type("struct globaldata")
    except gdb.error:
        raise gdb.GdbError(
            "libcaps: gdb knows no `struct globaldata`: the library's debug "
            "information is missing (stripped?) -- install an unstripped "
            "libcaps or compile the program with -g and #include <sys/thread.h>"
        )


def _eval_c(expr):
    """Evaluate a C expression whatever the language of the selected frame
    (a frame of the library is Rust)."""
    old = gdb.parameter("language")
    gdb.execute("set language c", to_string=True)
    try:
        return gdb.parse_and_eval(expr)
    finally:
        gdb.execute("set language %s" % old, to_string=True)


def _symbol_address(name):
    try:
        return int(_eval_c("(unsigned long)&%s" % name))
    except gdb.error:
        raise gdb.GdbError("libcaps: no symbol `%s`: is libcaps loaded?" % name)


def _read_int(name):
    return int(_eval_c("*(int *)%d" % _symbol_address(name)))


def cpus():
    """The started virtual cpus, as `struct globaldata *` values."""
    gdp = _globaldata_type().pointer()
    base = gdb.Value(_symbol_address("gdary")).cast(gdp)
    n = _read_int("ncpus")
    out = []
    for i in range(max(n, 1)):
        gd = base + i
        if int(gd["gd_self"]) == int(gd):
            out.append(gd)
    return out


def cpu_threads(gd):
    """The idle thread of `gd`, then every thread on its thread list."""
    yield gd["gd_idlethread"].address
    td = gd["gd_tdallq"]["tqh_first"]
    n = 0
    while int(td) != 0 and n < MAX_THREADS:
        yield td
        td = td["td_allq"]["tqe_next"]
        n += 1


def all_threads():
    for gd in cpus():
        for td in cpu_threads(gd):
            yield gd, td


def thread_name(td):
    try:
        return td["td_comm"].string()
    except (gdb.error, UnicodeDecodeError):
        return "?"


def _function_at(addr):
    """The name of the function at `addr`, or None."""
    if addr == 0:
        return None
    text = gdb.execute("info symbol 0x%x" % addr, to_string=True)
    if text.startswith("No symbol"):
        return None
    return text.split(" in section")[0].split(" + ")[0].strip()


def _port_kind(td, port):
    own = int(td["td_msgport"].address)
    if int(port) == own:
        where = "its own port 0x%x" % int(port)
    else:
        where = "port 0x%x" % int(port)
    putport = _function_at(int(port["mp_putport"])) or ""
    if "client_putport" in putport:
        return "a CAPS reply on " + where
    if "service_putport" in putport:
        return "a CAPS request on " + where
    if "remote_putport" in putport:
        return "a CAPS message on " + where
    return "a message on " + where


def _cpu_of_gd(addr):
    for gd in cpus():
        if int(gd) == addr:
            return int(gd["gd_cpuid"])
    return None


def thread_state(gd, td):
    """A one-line description of what `td` is doing."""
    flags = int(td["td_flags"])
    if flags & TDF_EXITED:
        return "exited"
    if int(gd["gd_curthread"]) == int(td):
        return "running (kernel thread LWP %d)" % int(gd["gd_pid"])
    wmesg = int(td["td_wmesg"])
    wchan = int(td["td_wchan"])
    if wmesg:
        what = td["td_wmesg"].string()
        if what == "waitport" and wchan:
            port = gdb.Value(wchan).cast(td["td_msgport"].type.pointer())
            return "blocked: waits for %s" % _port_kind(td, port)
        if what == "token" and wchan:
            tok = gdb.Value(wchan).cast(gdb.lookup_type("struct lwkt_token").pointer())
            owner = _cpu_of_gd(int(tok["t_cpu"]))
            return "blocked: waits for token 0x%x (owned by cpu %s)" % (
                wchan,
                "?" if owner is None else owner,
            )
        wait = int(td["td_wait"])
        if wait:
            return 'blocked: lwkt_block("%s") on wait queue 0x%x' % (what, wait)
        return "blocked (%s)" % what
    if int(td) == int(gd["gd_idlethread"].address):
        return "idle thread (not running)"
    if flags & TDF_RUNQ:
        mp = _read_int("mp_lock")
        if int(td["td_mpcount"]) > 0 and mp != int(gd["gd_cpuid"]) and mp != -1:
            return "runnable: waits for the MP lock (held by cpu %d)" % mp
        return "runnable"
    return "descheduled (lwkt_deschedule; waits for lwkt_schedule)"


class InfoLwktThreads(gdb.Command):
    """List every LWKT thread of every virtual cpu.

Columns: cpu, thread address, td_comm, priority (with the number of
critical sections held), MP-lock hold count (td_mpcount) and state:
running, runnable (possibly waiting for the MP lock), blocked (on a port,
a token, a CAPS reply, a wait queue) or descheduled."""

    def __init__(self):
        super().__init__("info lwkt-threads", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        rows = []
        for gd, td in all_threads():
            # A thread that has not run yet shows the critical section
            # it is born in (it leaves it when it starts).
            pri = int(td["td_pri"])
            prio = str(pri & TDPRI_MASK)
            if pri >= TDPRI_CRIT:
                prio += "+%dcrit" % (pri // TDPRI_CRIT)
            name = thread_name(td)
            rows.append(
                (
                    str(int(gd["gd_cpuid"])),
                    "0x%x" % int(td),
                    name,
                    prio,
                    str(int(td["td_mpcount"])),
                    thread_state(gd, td),
                )
            )
        mp = _read_int("mp_lock")
        gdb.write(
            "MP lock: %s\n" % ("free" if mp == -1 else "held by cpu %d" % mp)
        )
        head = ("CPU", "THREAD", "NAME", "PRI", "MP", "STATE")
        width = [max(len(r[i]) for r in rows + [head]) for i in range(5)]
        for r in [head] + rows:
            cols = [r[i].ljust(width[i]) for i in range(5)]
            gdb.write("  ".join(cols) + "  " + r[5] + "\n")


def _backtrace():
    """`backtrace` of the selected kernel thread, down to the first frame
    of the LWKT thread (the switch's trampoline, which has no caller: gdb
    would otherwise guess one from whatever lies above it)."""
    n = 0
    f = gdb.newest_frame()
    while f is not None and n < 10000:
        n += 1
        if "lwkt::arch::imp::trampoline" in (f.name() or ""):
            break
        try:
            f = f.older()
        except gdb.error:
            break
    gdb.execute("backtrace %d" % n)


def _saved_registers(td):
    """The registers the context switch saved for a switched-out thread,
    as (name, value) pairs in the order they are to be written."""
    sp = int(td["td_sp"])
    arch = gdb.selected_frame().architecture().name()
    mem = gdb.selected_inferior()
    if "x86-64" in arch:
        # The FP control slot, the resume address, rbx, rbp (r12-r15
        # are saved by the compiled code around the inline switch, where
        # the unwinder finds them).
        w = struct.unpack("<4Q", bytes(mem.read_memory(sp, 4 * 8)))
        return [("rbx", w[2]), ("rbp", w[3]), ("rsp", sp + 4 * 8), ("rip", w[1])]
    if arch.startswith("aarch64"):
        w = struct.unpack("<12Q", bytes(mem.read_memory(sp, 12 * 8)))
        regs = [("x%d" % (19 + i), w[i]) for i in range(10)]
        regs += [("x29", w[10]), ("x30", w[11]), ("sp", sp + 176), ("pc", w[11])]
        return regs
    raise gdb.GdbError("libcaps: lwkt-bt knows x86_64 and aarch64, not %s" % arch)


def _backtrace_saved(td):
    conn = getattr(gdb.selected_inferior(), "connection", None)
    if gdb.selected_inferior().pid == 0 or getattr(conn, "type", "") == "core":
        gdb.write(
            "(saved context at td_sp 0x%x: unwinding it needs a live process, "
            "not a core file)\n" % int(td["td_sp"])
        )
        return
    frame = gdb.selected_frame()
    thread = gdb.selected_thread()
    newest = gdb.newest_frame()
    newest.select()
    regs = _saved_registers(td)
    old = [(name, int(newest.read_register(name))) for name, _ in regs]
    try:
        for name, value in regs:
            gdb.execute("set $%s = %d" % (name, value), to_string=True)
        _backtrace()
    finally:
        for name, value in old:
            gdb.execute("set $%s = %d" % (name, value), to_string=True)
        thread.switch()
        try:
            _frame_at_level(frame.level()).select()
        except (gdb.error, RuntimeError):
            pass


def _frame_at_level(level):
    f = gdb.newest_frame()
    while level > 0 and f is not None:
        f = f.older()
        level -= 1
    return f if f is not None else gdb.newest_frame()


def _backtrace_running(gd):
    lwp = int(gd["gd_pid"])
    here = gdb.selected_thread()
    for t in gdb.selected_inferior().threads():
        if t.ptid[1] == lwp:
            t.switch()
            try:
                _backtrace()
            finally:
                here.switch()
            return
    gdb.write("(no kernel thread with LWP %d in this inferior)\n" % lwp)


def _find(arg):
    found = []
    addr = None
    try:
        addr = int(_eval_c(arg))
    except (gdb.error, ValueError):
        pass
    for gd, td in all_threads():
        if int(td) == addr or thread_name(td) == arg:
            found.append((gd, td))
    if not found:
        raise gdb.GdbError("lwkt-bt: no LWKT thread %s" % arg)
    return found


class LwktBt(gdb.Command):
    """Backtrace of an LWKT thread: lwkt-bt THREAD | all

THREAD is a thread address (an expression) or a td_comm name. A running
thread's backtrace is its kernel thread's; a switched-out thread's is
unwound from the registers saved on its stack by the context switch (the
program's own registers are restored afterwards)."""

    def __init__(self):
        super().__init__("lwkt-bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        arg = arg.strip()
        if not arg:
            raise gdb.GdbError("usage: lwkt-bt THREAD|all")
        targets = list(all_threads()) if arg == "all" else _find(arg)
        for gd, td in targets:
            state = thread_state(gd, td)
            gdb.write(
                '\nLWKT thread 0x%x "%s" on cpu %d: %s\n'
                % (int(td), thread_name(td), int(gd["gd_cpuid"]), state)
            )
            if int(gd["gd_curthread"]) == int(td):
                _backtrace_running(gd)
            elif int(td["td_flags"]) & TDF_EXITED or int(td["td_sp"]) == 0:
                gdb.write("(no saved context)\n")
            else:
                _backtrace_saved(td)


InfoLwktThreads()
LwktBt()
