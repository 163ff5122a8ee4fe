/* What the interrupt-controller test guests (pic-legacy, ioapic-lines, lapic-timer, ipi, x2apic,
 * misbehave, hang) share beyond runtime.h: reporting a check on the serial port and ending the run
 * on the first failure, and register-level access to the controllers the checks look at. Register
 * facts: SDM vol. 3 ch. 11 (local APIC), the 82093AA datasheet (IOAPIC), the 8259A datasheet. */
#ifndef GUEST_IRQTEST_H
#define GUEST_IRQTEST_H

#include "machine.h"

/* --- reporting ------------------------------------------------------------------------------ */

/* Exit values (debug_exit; the process status is (value << 1) | 1): 0 passed; 1-94 the number of
 * the failed check; these for what no check expected. */
#define EXIT_UNEXPECTED_VECTOR 95
#define EXIT_EXCEPTION_BASE 96 /* + the exception's vector (0-31) */

/* Prints "ok <code>: <what>" when `condition` holds; otherwise "FAIL <code>: <what>" and ends the
 * run with debug_exit(code). `what` is a printf format and its arguments. */
#define CHECK(code, condition, format, ...)                                  \
  do {                                                                       \
    if (condition) printf("  ok %u: " format "\n", (u32)(code), ##__VA_ARGS__); \
    else {                                                                   \
      printf("FAIL %u: " format "\n", (u32)(code), ##__VA_ARGS__);           \
      debug_exit(code);                                                      \
    }                                                                        \
  } while (0)
/* Prints the passing line and ends the run with debug_exit(0). */
void all_checks_passed(const char *guest) __attribute__((noreturn));
/* For guest_interrupt: an exception (vector < 32) nobody expected ends the run. */
void unexpected_exception(u64 vector, u64 error_code) __attribute__((noreturn));
void unexpected_vector(u64 vector) __attribute__((noreturn));

static inline void sti(void) { __asm__ volatile("sti; nop" ::: "memory"); } /* nop: STI's shadow is over */
static inline void cpuid(u32 leaf, u32 subleaf, u32 *eax, u32 *ebx, u32 *ecx, u32 *edx) {
  __asm__ volatile("cpuid" : "=a"(*eax), "=b"(*ebx), "=c"(*ecx), "=d"(*edx) : "a"(leaf), "c"(subleaf));
}

/* --- vectors -------------------------------------------------------------------------------- */

#define PIC_MASTER_VECTOR_BASE 0x20 /* IRQ n → 0x20 + n */
#define PIC_SLAVE_VECTOR_BASE 0x28
#define PIC_VECTOR_END 0x30
#define SPURIOUS_VECTOR 0xff /* runtime.c's lapic_enable programs the SVR with it */

/* --- 8259A ---------------------------------------------------------------------------------- */

#define PIC_MASTER_COMMAND 0x20
#define PIC_MASTER_DATA 0x21
#define PIC_SLAVE_COMMAND 0xa0
#define PIC_SLAVE_DATA 0xa1
#define PIC_ELCR_MASTER 0x4d0
#define PIC_ELCR_SLAVE 0x4d1
#define PIC_CASCADE_IRQ 2
/* OCW3: select what the command port reads: 0x0a IRR, 0x0b ISR (8259A datasheet). */
#define PIC_OCW3_READ_IRR 0x0a
#define PIC_OCW3_READ_ISR 0x0b
/* 16-bit views of both chips (slave in the high byte). */
u16 pic_read_irr(void);
u16 pic_read_isr(void);
u16 pic_read_mask(void);

/* --- IOAPIC (82093AA) ------------------------------------------------------------------------ */

#define IOAPIC_MMIO_BASE 0xfec00000ul
#define IOAPIC_REG_ID 0x00
#define IOAPIC_REG_VERSION 0x01
#define IOAPIC_REG_ARBITRATION 0x02
#define IOAPIC_REG_REDIRECTION 0x10 /* pin p: low dword 0x10 + 2p, high dword 0x11 + 2p */
#define IOAPIC_PINS 24
#define IOAPIC_MMIO_EOI 0x40 /* version 0x20: write a vector to end its level interrupt */
#define IOAPIC_VERSION_WITH_EOI 0x20
#define RTE_DELIVERY_STATUS (1u << 12)
#define RTE_REMOTE_IRR (1u << 14)
#define RTE_LEVEL (1u << 15)
#define RTE_MASKED (1u << 16)
u32 ioapic_register_read(u32 index);
void ioapic_register_write(u32 index, u32 value);
u32 ioapic_entry_low(u32 pin);
void ioapic_set_masked(u32 pin, int masked);

/* --- local APIC ------------------------------------------------------------------------------ */

/* Register numbers (xAPIC offset / 16 = x2APIC MSR - 0x800), SDM Table 11-1 / 11-6. */
#define LAPIC_ID 0x02
#define LAPIC_VERSION 0x03
#define LAPIC_TPR 0x08
#define LAPIC_PPR 0x0a
#define LAPIC_LDR 0x0d
#define LAPIC_DFR 0x0e
#define LAPIC_ISR 0x10 /* 8 registers of 32 vectors each */
#define LAPIC_TMR 0x18
#define LAPIC_IRR 0x20
#define LAPIC_ESR 0x28
#define LAPIC_ICR_HIGH 0x31
#define LAPIC_LVT_TIMER 0x32
#define LAPIC_LVT_THERMAL 0x33
#define LAPIC_LVT_PERFORMANCE 0x34
#define LAPIC_LVT_LINT1 0x36
#define LAPIC_LVT_ERROR 0x37
#define LAPIC_TIMER_INITIAL 0x38
#define LAPIC_TIMER_CURRENT 0x39
#define LAPIC_TIMER_DIVIDE 0x3e
#define LAPIC_SELF_IPI 0x3f /* x2APIC only */
#define MSR_APIC_BASE 0x1b
#define APIC_BASE_EXTD (1ul << 10) /* x2APIC mode */
#define APIC_BASE_EN (1ul << 11)   /* globally enabled */
#define LAPIC_VERSION_EOI_SUPPRESSION (1u << 24)
#define SVR_ENABLED (1u << 8)
#define SVR_SUPPRESS_EOI_BROADCAST (1u << 12)
#define LVT_MASKED (1u << 16)
#define LVT_EXTINT (7u << 8)
#define LVT_TIMER_ONE_SHOT (0u << 17)
#define LVT_TIMER_PERIODIC (1u << 17)
#define LVT_TIMER_TSC_DEADLINE (2u << 17)
#define DFR_FLAT 0xffffffffu
#define MSR_TSC_DEADLINE 0x6e0
/* ICR (SDM §11.6.1). */
#define ICR_FIXED (0u << 8)
#define ICR_LOWEST_PRIORITY (1u << 8)
#define ICR_NMI (4u << 8)
#define ICR_INIT (5u << 8)
#define ICR_STARTUP (6u << 8)
#define ICR_LOGICAL (1u << 11)
#define ICR_DELIVERY_PENDING (1u << 12) /* xAPIC "send pending"; x2APIC has none */
#define ICR_ASSERT (1u << 14)
#define ICR_LEVEL (1u << 15)
#define ICR_SELF (1u << 18)
#define ICR_ALL_INCLUDING_SELF (2u << 18)
#define ICR_ALL_EXCLUDING_SELF (3u << 18)
#define XAPIC_BROADCAST 0xffu
#define X2APIC_BROADCAST 0xffffffffu

/* ISR / IRR / TMR bit of `vector`. */
int lapic_vector_bit(u32 first_register, u32 vector);
static inline int lapic_in_service(u32 vector) { return lapic_vector_bit(LAPIC_ISR, vector); }
static inline int lapic_requested(u32 vector) { return lapic_vector_bit(LAPIC_IRR, vector); }
/* EOIs until nothing is in service (bounded by the 256 vectors); returns how many EOIs ended one. */
u32 lapic_eoi_all(void);

/* Whether the local APIC ended the interrupt now being handled before its handler ran: call it
 * first thing in the handler of a fixed interrupt. The SDM's APIC sets the vector's ISR bit when
 * the CPU takes it and clears it at the EOI write (§11.8.4); KVM's local APIC on a PVM host ends
 * every interrupt at injection (docs/architecture.md decision 32, kvm-from-node.md §8), so the bit
 * reads 0 there. Checks that depend on when an EOI happens use the answer, and print it, so the
 * tests can hold each chip mode to its own behaviour. */
int lapic_ended_at_delivery(u32 vector);
/* Prints which of the two the handlers saw ("EOI at delivery" or "EOI by the handler"). */
void report_eoi_timing(int ended_at_delivery);

#endif
