/* Shared helpers for gort's assembly files (x86_64 and aarch64, GNU as). */
#ifndef GORT_ASM_COMMON_H
#define GORT_ASM_COMMON_H

/* Begin a global function: text section, alignment, ELF type, CFI start. */
#define FUNC_BEGIN(name)            \
    .text;                          \
    .globl name;                    \
    .hidden name;                   \
    .type name, @function;          \
    .p2align 4;                     \
name:                               \
    .cfi_startproc

/* End a function begun with FUNC_BEGIN: CFI end and ELF size. */
#define FUNC_END(name)              \
    .cfi_endproc;                   \
    .size name, . - name

#endif

/* Every object built from asm/ says it needs no executable stack. */
    .section .note.GNU-stack, "", %progbits
