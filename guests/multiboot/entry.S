/* multiboot-hello's entry, built the way kvm-unit-tests builds its x86_64 tests for
 * `qemu -kernel`: a 64-bit program linked at 1 MiB whose first code is 32-bit, converted with
 * `objcopy -O elf32-i386` because QEMU's multiboot loader refuses a 64-bit ELF
 * (hw/i386/multiboot.c: "Cannot load x86-64 image, give a 32bit one").
 *
 * A multiboot loader enters `multiboot_entry` as Multiboot 0.6.96 §3.2 says: 32-bit protected
 * mode, flat CS and data segments, paging off, interrupts off, EAX = 0x2BADB002, EBX = the
 * multiboot information; the GDTR may be invalid and there is no stack. The stub checks EAX, saves
 * EAX and EBX, builds page tables identity-mapping the low 4 GiB with 2 MiB pages (which also
 * cover the IOAPIC and local APIC windows), loads its own GDT, enables PAE, EFER.LME and paging
 * (SDM vol. 3 §9.8.5), and far-jumps to 64-bit code, which calls multiboot_main(magic, info).
 * Everything it writes is in .bss, which the loader zeroes. */

#define MULTIBOOT_HEADER_MAGIC 0x1badb002
#define MULTIBOOT_BOOTLOADER_MAGIC 0x2badb002
/* Header flags the loader must honour (Multiboot 0.6.96 §3.1.2): modules page-aligned, and
 * mem_lower/mem_upper in the information. No a.out kludge: the loader reads the ELF. */
#define MULTIBOOT_PAGE_ALIGN (1 << 0)
#define MULTIBOOT_MEMORY_INFO (1 << 1)
#define MULTIBOOT_FLAGS (MULTIBOOT_PAGE_ALIGN | MULTIBOOT_MEMORY_INFO)

/* Paging structures (SDM vol. 3 §4.5): present, writable, and a 2 MiB page in a directory entry. */
#define PTE_PRESENT 0x1
#define PTE_WRITABLE 0x2
#define PDE_LARGE_PAGE 0x80
#define PAGE_BYTES 4096
#define LARGE_PAGE_BYTES 0x200000
#define MAPPED_GIBIBYTES 4
#define DIRECTORY_ENTRIES 512
#define CR0_PE (1 << 0)
#define CR0_PG (1 << 31)
#define CR4_PAE (1 << 5)
#define MSR_EFER 0xc0000080
#define EFER_LME (1 << 8)
#define CODE64_SELECTOR 0x08
#define DATA_SELECTOR 0x10
#define STACK_BYTES 0x4000

    .section .multiboot, "a"
    .balign 4
multiboot_header:
    .long MULTIBOOT_HEADER_MAGIC
    .long MULTIBOOT_FLAGS
    .long -(MULTIBOOT_HEADER_MAGIC + MULTIBOOT_FLAGS)

    .section .text.entry32, "ax"
    .code32
    .globl multiboot_entry
multiboot_entry:
    /* Not started by a multiboot loader: EBX means nothing, so keep none of it. */
    cmpl $MULTIBOOT_BOOTLOADER_MAGIC, %eax
    je 1f
    xorl %ebx, %ebx
1:  movl %eax, boot_magic
    movl %ebx, boot_information

    /* Four page directories of 2 MiB pages: entry n maps n << 21 (the high halves stay 0). */
    movl $page_directories, %edi
    movl $(PTE_PRESENT | PTE_WRITABLE | PDE_LARGE_PAGE), %eax
    movl $(MAPPED_GIBIBYTES * DIRECTORY_ENTRIES), %ecx
2:  movl %eax, (%edi)
    addl $LARGE_PAGE_BYTES, %eax
    addl $8, %edi
    loop 2b
    /* The PDPT's first four entries name the directories; PML4[0] names the PDPT. */
    movl $pdpt, %edi
    movl $(page_directories + PTE_PRESENT + PTE_WRITABLE), %eax
    movl $MAPPED_GIBIBYTES, %ecx
3:  movl %eax, (%edi)
    addl $PAGE_BYTES, %eax
    addl $8, %edi
    loop 3b
    movl $(pdpt + PTE_PRESENT + PTE_WRITABLE), pml4

    lgdt gdt64_pointer
    movl %cr4, %eax
    orl $CR4_PAE, %eax
    movl %eax, %cr4
    movl $pml4, %eax
    movl %eax, %cr3
    movl $MSR_EFER, %ecx
    rdmsr
    orl $EFER_LME, %eax
    wrmsr
    movl %cr0, %eax
    orl $(CR0_PG | CR0_PE), %eax
    movl %eax, %cr0
    ljmp $CODE64_SELECTOR, $entry64

    .code64
entry64:
    movl $DATA_SELECTOR, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %eax, %fs
    movl %eax, %gs
    leaq stack_top(%rip), %rsp
    movl boot_magic(%rip), %edi
    movl boot_information(%rip), %esi
    call multiboot_main
4:  cli
    hlt
    jmp 4b

    .section .rodata
    .balign 8
/* null, 64-bit code (L=1, P, DPL 0, execute/read), flat read/write data (SDM vol. 3 §3.4.5). */
gdt64:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
gdt64_end:
gdt64_pointer:
    .word gdt64_end - gdt64 - 1
    .long gdt64

    .bss
    .balign 4
boot_magic:
    .skip 4
boot_information:
    .skip 4
    .balign PAGE_BYTES
pml4:
    .skip PAGE_BYTES
pdpt:
    .skip PAGE_BYTES
page_directories:
    .skip MAPPED_GIBIBYTES * PAGE_BYTES
    .balign 16
    .skip STACK_BYTES
stack_top:

    .section .note.GNU-stack, "", @progbits
