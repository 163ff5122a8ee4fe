#include "smp.h"
#include "irqtest.h"
#include "timing.h"

#define AP_STACK_BYTES 0x4000
#define STRINGIFY_TOKEN(x) #x
#define STRINGIFY(x) STRINGIFY_TOKEN(x)
#define SIPI_VECTOR (SMP_TRAMPOLINE_ADDRESS >> 12) /* a Start-up IPI's vector is the page's number */
/* The MP start-up sequence's waits (SDM vol. 3 §9.4.4.1): 10 ms after INIT, 200 µs after each SIPI. */
#define INIT_DELAY_US 10000
#define SIPI_DELAY_US 200
/* How long the APs may take to check in: each must leave the VMM's wait-for-SIPI state and run
 * the trampoline, whose mode switches are emulated instruction by instruction on a PVM host. */
#define CHECK_IN_TIMEOUT_US 3000000
#define ICR_IDLE_TIMEOUT_US 100000

/* The trampoline, assembled here and copied to SMP_TRAMPOLINE_ADDRESS: it runs there, so every
 * address it uses is that base plus the offset from smp_trampoline_start (or RIP-relative inside
 * the copy, or an absolute address of our image).
 *
 *   real mode, CS = the SIPI page      load the trampoline's GDT, set CR0.PE
 *   32-bit protected mode (selector 0x18)
 *                                      CR4.PAE (and OSFXSR/OSXMMEXCPT as the BSP has), CR3 = the
 *                                      VMM's PML4, EFER.LME, then CR0.PG: long mode (SDM §9.8.5)
 *   64-bit mode (selector 0x08)        load the VMM's GDT, take a ticket (lock xadd), pick that
 *                                      ticket's stack, call smp_ap_entry(ticket)
 *
 * The trampoline's GDT has the VMM's descriptors at the VMM's selectors (0x08 64-bit code, 0x10
 * data) and a 32-bit code descriptor at 0x18 for the protected-mode step, which the VMM's GDT
 * lacks. Selectors 0x08/0x10 therefore mean the same before and after the switch to the VMM's. */
__asm__(
    ".pushsection .rodata.smp_trampoline, \"a\"\n"
    ".globl smp_trampoline_start, smp_trampoline_end, smp_trampoline_ticket\n"
    ".set TRAMPOLINE_BASE, " STRINGIFY(SMP_TRAMPOLINE_ADDRESS) "\n"
    ".set AP_TICKETS, " STRINGIFY(SMP_MAX_CPUS) " - 1\n"
    ".set AP_STACK_BYTES, " STRINGIFY(AP_STACK_BYTES) "\n"
    ".code16\n"
    "smp_trampoline_start:\n"
    "  cli\n"
    "  cld\n"
    "  movw %cs, %ax\n"
    "  movw %ax, %ds\n"
    "  lgdtl smp_trampoline_gdt_pointer - smp_trampoline_start\n"
    "  movl %cr0, %eax\n"
    "  orl $0x1, %eax\n" /* CR0.PE */
    "  movl %eax, %cr0\n"
    "  ljmpl $0x18, $(TRAMPOLINE_BASE + smp_trampoline_protected - smp_trampoline_start)\n"
    ".code32\n"
    "smp_trampoline_protected:\n"
    "  movw $0x10, %ax\n"
    "  movw %ax, %ds\n"
    "  movw %ax, %es\n"
    "  movw %ax, %ss\n"
    "  movw %ax, %fs\n"
    "  movw %ax, %gs\n"
    "  movl $0x620, %eax\n" /* CR4: PAE | OSFXSR | OSXMMEXCPT, as long-mode.ts gives the BSP */
    "  movl %eax, %cr4\n"
    "  movl $0x1000, %eax\n" /* the VMM's PML4 (long-mode.ts) */
    "  movl %eax, %cr3\n"
    "  movl $0xc0000080, %ecx\n" /* IA32_EFER */
    "  rdmsr\n"
    "  orl $0x100, %eax\n" /* LME */
    "  wrmsr\n"
    "  movl $0x80010033, %eax\n" /* CR0: PG | WP | NE | ET | MP | PE, as the BSP's; CD/NW clear */
    "  movl %eax, %cr0\n"
    "  ljmpl $0x08, $(TRAMPOLINE_BASE + smp_trampoline_long - smp_trampoline_start)\n"
    ".code64\n"
    "smp_trampoline_long:\n"
    "  lgdt smp_trampoline_vmm_gdt_pointer(%rip)\n"
    "  movw $0x10, %ax\n"
    "  movw %ax, %ds\n"
    "  movw %ax, %es\n"
    "  movw %ax, %ss\n"
    "  movw %ax, %fs\n"
    "  movw %ax, %gs\n"
    "  movl $1, %eax\n"
    "  lock xaddl %eax, smp_trampoline_ticket(%rip)\n"
    "  cmpl $AP_TICKETS, %eax\n" /* only tickets with a stack go on; later arrivals halt */
    "  jae 1f\n"
    "  movl %eax, %edi\n"
    "  leal 1(%rax), %eax\n" /* ticket t's stack is [t, t + 1) × AP_STACK_BYTES; it grows down */
    "  imull $AP_STACK_BYTES, %eax, %eax\n"
    "  movabsq $smp_ap_stacks, %rsp\n"
    "  addq %rax, %rsp\n"
    "  movabsq $smp_ap_entry, %rax\n"
    "  callq *%rax\n"
    "1:\n"
    "  cli\n"
    "  hlt\n"
    "  jmp 1b\n"
    ".balign 8\n"
    "smp_trampoline_gdt:\n"
    "  .quad 0\n"
    "  .quad 0x00af9a000000ffff\n" /* 0x08: 64-bit code (long-mode.ts GDT_CODE_64) */
    "  .quad 0x00cf92000000ffff\n" /* 0x10: flat data (long-mode.ts GDT_DATA) */
    "  .quad 0x00cf9a000000ffff\n" /* 0x18: flat 32-bit code */
    "smp_trampoline_gdt_pointer:\n"
    "  .word 4 * 8 - 1\n"
    "  .long TRAMPOLINE_BASE + smp_trampoline_gdt - smp_trampoline_start\n"
    "smp_trampoline_vmm_gdt_pointer:\n"
    "  .word 3 * 8 - 1\n" /* the VMM's GDT at 0x500: null, code, data (long-mode.ts) */
    "  .quad 0x500\n"
    ".balign 4\n"
    "smp_trampoline_ticket:\n"
    "  .long 0\n"
    "smp_trampoline_end:\n"
    ".popsection\n");

extern const u8 smp_trampoline_start[];
extern const u8 smp_trampoline_end[];
extern const u8 smp_trampoline_ticket[];

/* Stacks of CPUs 1..SMP_MAX_CPUS-1; ticket t (CPU t + 1) takes stack t. */
u8 smp_ap_stacks[(SMP_MAX_CPUS - 1) * AP_STACK_BYTES] __attribute__((aligned(16)));

struct idt_pointer {
  u16 limit;
  u64 base;
} __attribute__((packed));

static struct idt_pointer bsp_idt;
static int bsp_x2apic;
static ap_main_fn ap_main_function;
static volatile u32 aps_online;
static volatile u32 apic_ids[SMP_MAX_CPUS];

void smp_ap_entry(u32 ticket) __attribute__((noreturn, used));

void smp_ap_entry(u32 ticket) {
  u32 cpu = ticket + 1;
  __asm__ volatile("lidt %0" : : "m"(bsp_idt));
  lapic_enable(bsp_x2apic);
  apic_ids[cpu] = lapic_id();
  __atomic_fetch_add(&aps_online, 1, __ATOMIC_SEQ_CST);
  ap_main_function(cpu);
  for (;;) __asm__ volatile("cli; hlt" ::: "memory");
}

static volatile u32 *trampoline_ticket(void) {
  return (volatile u32 *)((u64)SMP_TRAMPOLINE_ADDRESS + (u64)(smp_trampoline_ticket - smp_trampoline_start));
}

static void copy_trampoline(void) {
  volatile u8 *target = (volatile u8 *)(u64)SMP_TRAMPOLINE_ADDRESS;
  for (const u8 *source = smp_trampoline_start; source < smp_trampoline_end; source++) *target++ = *source;
}

/* An xAPIC sets "send pending" until the IPI is accepted (SDM §11.6.1); wait for it, bounded. */
static void wait_icr_idle(void) {
  if (bsp_x2apic) return;
  (void)WAIT_FOR((lapic_read(LAPIC_REG_ICR) & ICR_DELIVERY_PENDING) == 0, ICR_IDLE_TIMEOUT_US);
}

static void send_to_all_others(u32 command) {
  lapic_send_ipi(0, ICR_ALL_EXCLUDING_SELF | ICR_ASSERT | command);
  wait_icr_idle();
}

u32 smp_start_all(u32 cpu_count, ap_main_fn ap_main) {
  if (cpu_count > SMP_MAX_CPUS) cpu_count = SMP_MAX_CPUS;
  u32 expected = cpu_count > 0 ? cpu_count - 1 : 0;
  __asm__ volatile("sidt %0" : "=m"(bsp_idt));
  bsp_x2apic = (rdmsr(MSR_APIC_BASE) & APIC_BASE_EXTD) != 0;
  ap_main_function = ap_main;
  apic_ids[0] = lapic_id();
  copy_trampoline();
  send_to_all_others(ICR_INIT);
  delay_us(INIT_DELAY_US);
  for (int sipi = 0; sipi < 2; sipi++) {
    send_to_all_others(ICR_STARTUP | SIPI_VECTOR);
    delay_us(SIPI_DELAY_US);
  }
  (void)WAIT_FOR(aps_online >= expected, CHECK_IN_TIMEOUT_US);
  u32 online = aps_online;
  return online >= expected ? 0 : expected - online;
}

u32 smp_aps_online(void) { return aps_online; }
u32 smp_trampoline_arrivals(void) { return *trampoline_ticket(); }
u32 smp_apic_id(u32 cpu) { return cpu < SMP_MAX_CPUS ? apic_ids[cpu] : 0xffffffffu; }
