/* Entry and interrupt stubs of our 64-bit guests.
 *
 * _start runs in long mode with interrupts off (src/kvm/long-mode.ts): it sets the stack and
 * calls main(); if main returns, the guest halts for good.
 *
 * interrupt_stubs: 256 stubs of 16 bytes each, one per vector, for the IDT (runtime.c). Each
 * pushes a zero in place of an error code when the CPU pushes none (vectors 8, 10-14, 17, 21,
 * 29 and 30 have one: SDM vol. 3 §6.13), then the vector, and jumps to the common path, which
 * saves the caller-saved registers, calls guest_interrupt(vector, error_code) and returns with iretq. */
    .section .text.start, "ax"
    .globl _start
_start:
    lea __stack_top(%rip), %rsp
    call main
1:  cli
    hlt
    jmp 1b

    .text
    .globl interrupt_stubs
    .balign 16
interrupt_stubs:
    vector = 0
    .rept 256
    .balign 16
    .if (vector == 8) || (vector >= 10 && vector <= 14) || (vector == 17) || (vector == 21) || (vector == 29) || (vector == 30)
    .else
    pushq $0
    .endif
    pushq $vector
    jmp interrupt_common
    vector = vector + 1
    .endr

interrupt_common:
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    movq 72(%rsp), %rdi      /* the vector */
    movq 80(%rsp), %rsi      /* the error code, or 0 */
    cld
    call guest_interrupt
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rax
    addq $16, %rsp
    iretq

    .section .note.GNU-stack, "", @progbits
