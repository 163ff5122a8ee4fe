/* The runtime of our 64-bit test guests: port and MMIO access, MSRs, the IDT, the 8259A pair,
 * the local APIC (xAPIC MMIO or x2APIC MSRs), the IOAPIC, and reporting to the VMM through ports.
 * Freestanding: no libc. Register facts cite the SDM vol. 3 ch. 11 and the 82093AA / 8259A
 * datasheets (shared/spec/x86-controllers.md). */
#ifndef GUEST_RUNTIME_H
#define GUEST_RUNTIME_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

/* Ports the VMM watches (src/kvm/guest-ports.ts has the same numbers). */
#define PORT_REPORT 0x10     /* 32-bit OUT: an interrupt handler ran for this vector (the VMM knows which vCPU) */
#define PORT_READY 0x11      /* OUT: set-up is done */
#define PORT_FATAL 0x12      /* 32-bit OUT: an unexpected exception's vector; the guest stops */
#define PORT_AP_STARTED 0x13 /* OUT: an application processor runs (irq-probe's AP code) */
#define PORT_DEBUG_EXIT 0xf4 /* isa-debug-exit: the VMM exits with (value << 1) | 1 */

static inline void outb(u16 port, u8 value) { __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port)); }
static inline void outl(u16 port, u32 value) { __asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port)); }
static inline u8 inb(u16 port) {
  u8 value;
  __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
  return value;
}
static inline u32 mmio_read(u64 address) { return *(volatile u32 *)address; }
static inline void mmio_write(u64 address, u32 value) { *(volatile u32 *)address = value; }
static inline u64 rdmsr(u32 index) {
  u32 low, high;
  __asm__ volatile("rdmsr" : "=a"(low), "=d"(high) : "c"(index));
  return ((u64)high << 32) | low;
}
static inline void wrmsr(u32 index, u64 value) {
  __asm__ volatile("wrmsr" : : "c"(index), "a"((u32)value), "d"((u32)(value >> 32)));
}
static inline void sti_hlt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }
static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }

/* Installs the 256 interrupt gates (interrupt_stubs in start.S) and loads the IDT. */
void idt_install(void);
/* Called by every stub with interrupts off: the guest's own dispatcher. */
void guest_interrupt(u64 vector, u64 error_code);

/* 8259A pair: ICW1-4 with vector bases, every IRQ masked; then unmask and ELCR (ports 0x4d0/1). */
void pic_init(u8 master_base, u8 slave_base);
void pic_set_mask(u16 mask);
void pic_set_elcr(u16 level_irqs);
void pic_eoi(u8 irq);

/* Local APIC: xAPIC at its default MMIO base, or x2APIC through MSRs 0x800-0x8ff. */
void lapic_enable(int x2apic);
u32 lapic_id(void);
void lapic_eoi(void);
void lapic_write(u32 register_number, u32 value);
/* Sends an IPI: ICR high (destination) then ICR low, which sends (x2APIC: one 64-bit write). */
void lapic_send_ipi(u32 destination, u32 command);
u32 lapic_read(u32 register_number);
#define LAPIC_REG_SVR 0x0f
#define LAPIC_REG_EOI 0x0b
#define LAPIC_REG_LINT0 0x35
#define LAPIC_REG_ICR 0x30

/* IOAPIC at 0xfec00000: redirection entry of `pin` (SDM-style fields, 82093AA §3.2.4). */
void ioapic_route(u8 pin, u8 vector, int level_triggered, u8 destination, int masked);

/* Reporting. */
void report_interrupt(u64 vector);
void fatal(u64 vector);

/* 16- and 32-bit port accesses (PCI configuration mechanism #1 reads CONFIG_DATA's lanes by size). */
static inline void outw(u16 port, u16 value) { __asm__ volatile("outw %0, %1" : : "a"(value), "Nd"(port)); }
static inline u16 inw(u16 port) {
  u16 value;
  __asm__ volatile("inw %1, %0" : "=a"(value) : "Nd"(port));
  return value;
}
static inline u32 inl(u16 port) {
  u32 value;
  __asm__ volatile("inl %1, %0" : "=a"(value) : "Nd"(port));
  return value;
}

#endif
