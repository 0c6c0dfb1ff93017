/*
 * trapstep.h -- `stepper()`: set the trap flag and call lwkt_yield, which
 * returns to `stepper_ret` (where a SIGTRAP handler that single-steps
 * through lwkt_yield clears the flag again). x86_64 only; elsewhere a
 * plain call (the tests that include this then do not step).
 */
#ifndef TRAPSTEP_H
#define TRAPSTEP_H

void stepper(void);
extern const char stepper_ret[];	/* where lwkt_yield returns to */

#ifdef __x86_64__
__asm__(
	".text\n"
	".globl stepper\n"
	".type stepper, @function\n"
	"stepper:\n"
	"	.cfi_startproc\n"
	"	sub $8, %rsp\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	pushfq\n"
	"	orq $0x100, (%rsp)\n"
	"	popfq\n"
	"	call lwkt_yield@PLT\n"
	".globl stepper_ret\n"
	"stepper_ret:\n"
	"	add $8, %rsp\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	ret\n"
	"	.cfi_endproc\n"
	".size stepper, .-stepper\n");
#else
void stepper(void) { lwkt_yield(); }
const char stepper_ret[1];
#endif

#endif /* !TRAPSTEP_H */
