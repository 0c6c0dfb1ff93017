/*
 * C part of libcaps for Linux: what stable Rust cannot define.
 *
 *  - The variadic functions lwkt_create(), lwkt_set_comm() and panic():
 *    they format with vsnprintf/vfprintf and call into Rust.
 *  - The per-kernel-thread pointer behind the `mycpu` macro, as an
 *    initial-exec TLS variable that C programs read with one instruction.
 *  - Valgrind client requests that register thread stacks.
 *  - Debug information for the structures the gdb extension
 *    (gdb/libcaps-gdb.py) walks: build.rs compiles this file with -g, so
 *    that the extension works on programs compiled without -g.
 *
 * libcaps.map says which of the symbols defined here the libraries export
 * (the libcaps_* helpers are internal).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef LIBCAPS_HAVE_VALGRIND
#include <valgrind/valgrind.h>
#endif
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>

/* The current cpu of this kernel thread; NULL until set up. */
__thread struct globaldata *__libcaps_mycpu
    __attribute__((tls_model("initial-exec")));

/*
 * The last thread this kernel thread (this cpu) switched away from and
 * the stack pointer the switch saved in its td_sp, or NULL: the
 * x86_64 switch takes a resumed thread's stack pointer from here when it
 * is that thread, without the loads that lead to its td_sp
 * (src/lwkt/arch.rs, "the last switched-out thread"). Internal.
 */
__thread void *__libcaps_swlast[2]
    __attribute__((tls_model("initial-exec"), visibility("hidden")));

/* Message of the first panic(), as in DragonFly. */
const char *panicstr;

/* Never used: only its type matters, to gdb (see above). */
struct libcaps_gdb_types {
	struct globaldata *gd;
	struct thread *td;
	struct lwkt_port *port;
	struct lwkt_msg *msg;
	struct lwkt_token *tok;
	struct lwkt_wait *wait;
};
__attribute__((used)) static const struct libcaps_gdb_types *libcaps_gdb_types;

struct globaldata *libcaps_tls_gd(void);
void libcaps_tls_set_gd(struct globaldata *gd);
unsigned int libcaps_vg_stack_register(void *lo, void *hi);
void libcaps_vg_stack_deregister(unsigned int id);
int lwkt_create(void (*func)(void *), void *arg, struct thread **ptd,
    struct thread *template, int tdflags, int cpu, const char *ctl, ...);
void lwkt_set_comm(struct thread *td, const char *ctl, ...);
void panic(const char *ctl, ...) __attribute__((noreturn));

/* Rust (src/capi/shim.rs) */
int libcaps_thread_create(void (*func)(void *), void *arg, struct thread **ptd,
    struct thread *template, int tdflags, int cpu, const char *comm);
void libcaps_thread_set_comm(struct thread *td, const char *comm);

struct globaldata *
libcaps_tls_gd(void)
{
	return (__libcaps_mycpu);
}

void
libcaps_tls_set_gd(struct globaldata *gd)
{
	__libcaps_mycpu = gd;
}

unsigned int
libcaps_vg_stack_register(void *lo, void *hi)
{
#ifdef LIBCAPS_HAVE_VALGRIND
	return (VALGRIND_STACK_REGISTER(lo, hi));
#else
	(void)lo;
	(void)hi;
	return (0);
#endif
}

void
libcaps_vg_stack_deregister(unsigned int id)
{
#ifdef LIBCAPS_HAVE_VALGRIND
	if (id != 0)
		VALGRIND_STACK_DEREGISTER(id);
#else
	(void)id;
#endif
}

/* MAXCOMLEN + 1 */
#define COMM_SIZE 17

/*
 * The thread name, in comm (COMM_SIZE bytes, zero after the name, so
 * that the Rust side copies it whole without looking for its end): the
 * first COMM_SIZE - 1 bytes of ctl, copied as they are scanned. 0 when
 * they hold a conversion, which the caller then formats with
 * format_comm() (vsnprintf would give the same bytes otherwise, at many
 * times the cost of the rest of lwkt_create).
 */
static inline int
copy_comm(char *comm, const char *ctl)
{
	size_t i;
	char c;

	memset(comm, 0, COMM_SIZE);
	for (i = 0; i < COMM_SIZE - 1 && (c = ctl[i]) != '\0'; ++i) {
		if (c == '%')
			return (0);
		comm[i] = c;
	}
	return (1);
}

/*
 * ctl formatted into comm (as copy_comm leaves it). Out of line, and
 * va_start only on the way to it, so that the common case, a name
 * without conversions, pays for neither a va_list nor the registers
 * that live across vsnprintf.
 */
__attribute__((noinline, cold)) static void
format_comm(char *comm, const char *ctl, va_list ap)
{
	memset(comm, 0, COMM_SIZE);
	vsnprintf(comm, COMM_SIZE, ctl, ap);
}

/*
 * lwkt_create of a name with conversions: formatted, then created. The
 * whole of it out of line, so that lwkt_create itself keeps no argument
 * across a call and needs no callee-saved register (their pushes and
 * pops were a third of its instructions).
 */
__attribute__((noinline, cold)) static int
create_formatted(void (*func)(void *), void *arg, struct thread **ptd,
    struct thread *template, int tdflags, int cpu, const char *ctl,
    va_list ap)
{
	char comm[COMM_SIZE];

	format_comm(comm, ctl, ap);
	return (libcaps_thread_create(func, arg, ptd, template, tdflags, cpu,
	    comm));
}

int
lwkt_create(void (*func)(void *), void *arg, struct thread **ptd,
    struct thread *template, int tdflags, int cpu, const char *ctl, ...)
{
	char comm[COMM_SIZE];
	va_list ap;
	int error;

	if (ctl == NULL)
		return (libcaps_thread_create(func, arg, ptd, template,
		    tdflags, cpu, NULL));
	if (__builtin_expect(!copy_comm(comm, ctl), 0)) {
		va_start(ap, ctl);
		error = create_formatted(func, arg, ptd, template, tdflags,
		    cpu, ctl, ap);
		va_end(ap);
		return (error);
	}
	return (libcaps_thread_create(func, arg, ptd, template, tdflags, cpu,
	    comm));
}

void
lwkt_set_comm(struct thread *td, const char *ctl, ...)
{
	char comm[COMM_SIZE];
	va_list ap;

	if (ctl == NULL) {
		libcaps_thread_set_comm(td, NULL);
		return;
	}
	if (!copy_comm(comm, ctl)) {
		va_start(ap, ctl);
		format_comm(comm, ctl, ap);
		va_end(ap);
	}
	libcaps_thread_set_comm(td, comm);
}

void
panic(const char *ctl, ...)
{
	static char buf[1024];
	va_list ap;

	va_start(ap, ctl);
	vsnprintf(buf, sizeof(buf), ctl != NULL ? ctl : "(null)", ap);
	va_end(ap);
	if (panicstr == NULL)
		panicstr = buf;
	/* Keep what the program printed before the panic. */
	fflush(stdout);
	fputs(buf, stderr);
	abort();
}

/*
 * Sanitizer hooks (src/lwkt/san.rs). The runtime functions are weak
 * references: they resolve when the program was built with
 * -fsanitize=address or -fsanitize=thread and stay NULL otherwise.
 * libcaps_san_hooks() tells once which runtime is there; the wrappers
 * below are called only then.
 */
void __sanitizer_start_switch_fiber(void **, const void *, size_t)
    __attribute__((weak));
void __sanitizer_finish_switch_fiber(void *, const void **, size_t *)
    __attribute__((weak));
void __asan_unpoison_memory_region(void const volatile *, size_t)
    __attribute__((weak));
void *__tsan_get_current_fiber(void) __attribute__((weak));
void *__tsan_create_fiber(unsigned) __attribute__((weak));
void __tsan_destroy_fiber(void *) __attribute__((weak));
void __tsan_switch_to_fiber(void *, unsigned) __attribute__((weak));
void __tsan_acquire(void *) __attribute__((weak));
void __tsan_release(void *) __attribute__((weak));
void __lsan_register_root_region(const void *, size_t) __attribute__((weak));
void __lsan_unregister_root_region(const void *, size_t) __attribute__((weak));

int libcaps_san_hooks(void);
void libcaps_asan_start_switch(void **fake, const void *bottom, size_t size);
void libcaps_asan_finish_switch(void *fake);
void libcaps_asan_unpoison(void *p, size_t size);
void *libcaps_tsan_current_fiber(void);
void *libcaps_tsan_create_fiber(void);
void libcaps_tsan_destroy_fiber(void *fiber);
void libcaps_tsan_switch_to_fiber(void *fiber);
void libcaps_tsan_acquire(void *addr);
void libcaps_tsan_release(void *addr);
void libcaps_lsan_root(const void *p, size_t size, int add);

/*
 * Bit 0: AddressSanitizer's fiber calls; bit 1: ThreadSanitizer's; bit 2:
 * LeakSanitizer's root regions (with -fsanitize=address or =leak).
 */
int
libcaps_san_hooks(void)
{
	int hooks = 0;

	if (__sanitizer_start_switch_fiber != NULL &&
	    __sanitizer_finish_switch_fiber != NULL &&
	    __asan_unpoison_memory_region != NULL)
		hooks |= 1;
	if (__tsan_get_current_fiber != NULL && __tsan_create_fiber != NULL &&
	    __tsan_destroy_fiber != NULL && __tsan_switch_to_fiber != NULL &&
	    __tsan_acquire != NULL && __tsan_release != NULL)
		hooks |= 2;
	if (__lsan_register_root_region != NULL &&
	    __lsan_unregister_root_region != NULL)
		hooks |= 4;
	return (hooks);
}

void
libcaps_lsan_root(const void *p, size_t size, int add)
{
	if (add)
		__lsan_register_root_region(p, size);
	else
		__lsan_unregister_root_region(p, size);
}

void
libcaps_asan_start_switch(void **fake, const void *bottom, size_t size)
{
	__sanitizer_start_switch_fiber(fake, bottom, size);
}

void
libcaps_asan_finish_switch(void *fake)
{
	__sanitizer_finish_switch_fiber(fake, NULL, NULL);
}

void
libcaps_asan_unpoison(void *p, size_t size)
{
	__asan_unpoison_memory_region(p, size);
}

void *
libcaps_tsan_current_fiber(void)
{
	return (__tsan_get_current_fiber());
}

void *
libcaps_tsan_create_fiber(void)
{
	return (__tsan_create_fiber(0));
}

void
libcaps_tsan_destroy_fiber(void *fiber)
{
	__tsan_destroy_fiber(fiber);
}

void
libcaps_tsan_switch_to_fiber(void *fiber)
{
	__tsan_switch_to_fiber(fiber, 0);
}

void
libcaps_tsan_acquire(void *addr)
{
	__tsan_acquire(addr);
}

void
libcaps_tsan_release(void *addr)
{
	__tsan_release(addr);
}
