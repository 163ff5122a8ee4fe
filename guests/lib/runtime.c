#include "runtime.h"

/* --- IDT ------------------------------------------------------------------------------------ */

struct idt_gate {
  u16 offset_low;
  u16 selector;
  u8 ist;
  u8 type_attributes;
  u16 offset_middle;
  u32 offset_high;
  u32 reserved;
} __attribute__((packed));

#define IDT_VECTORS 256
#define STUB_BYTES 16
#define CODE_SELECTOR 0x08          /* long-mode.ts's GDT */
#define INTERRUPT_GATE_PRESENT 0x8e /* P=1, DPL=0, type 0xE: 64-bit interrupt gate (IF cleared) */

extern char interrupt_stubs[];
static struct idt_gate idt[IDT_VECTORS] __attribute__((aligned(16)));

void idt_install(void) {
  for (int vector = 0; vector < IDT_VECTORS; vector++) {
    u64 handler = (u64)(interrupt_stubs + vector * STUB_BYTES);
    idt[vector] = (struct idt_gate){(u16)handler, CODE_SELECTOR, 0, INTERRUPT_GATE_PRESENT, (u16)(handler >> 16), (u32)(handler >> 32), 0};
  }
  struct {
    u16 limit;
    u64 base;
  } __attribute__((packed)) descriptor = {sizeof idt - 1, (u64)idt};
  __asm__ volatile("lidt %0" : : "m"(descriptor));
}

/* --- 8259A pair ----------------------------------------------------------------------------- */

#define PIC_MASTER_COMMAND 0x20
#define PIC_MASTER_DATA 0x21
#define PIC_SLAVE_COMMAND 0xa0
#define PIC_SLAVE_DATA 0xa1
#define PIC_ELCR_MASTER 0x4d0
#define PIC_ELCR_SLAVE 0x4d1
#define PIC_ICW1_ICW4_NEEDED 0x11 /* ICW1: edge, cascade, ICW4 follows */
#define PIC_ICW4_8086 0x01
#define PIC_CASCADE_IRQ 2
#define PIC_NONSPECIFIC_EOI 0x20

void pic_init(u8 master_base, u8 slave_base) {
  outb(PIC_MASTER_COMMAND, PIC_ICW1_ICW4_NEEDED);
  outb(PIC_MASTER_DATA, master_base);
  outb(PIC_MASTER_DATA, 1 << PIC_CASCADE_IRQ);
  outb(PIC_MASTER_DATA, PIC_ICW4_8086);
  outb(PIC_SLAVE_COMMAND, PIC_ICW1_ICW4_NEEDED);
  outb(PIC_SLAVE_DATA, slave_base);
  outb(PIC_SLAVE_DATA, PIC_CASCADE_IRQ);
  outb(PIC_SLAVE_DATA, PIC_ICW4_8086);
  pic_set_mask(0xffff);
}

void pic_set_mask(u16 mask) {
  outb(PIC_MASTER_DATA, (u8)mask);
  outb(PIC_SLAVE_DATA, (u8)(mask >> 8));
}

void pic_set_elcr(u16 level_irqs) {
  outb(PIC_ELCR_MASTER, (u8)level_irqs);
  outb(PIC_ELCR_SLAVE, (u8)(level_irqs >> 8));
}

void pic_eoi(u8 irq) {
  if (irq >= 8) outb(PIC_SLAVE_COMMAND, PIC_NONSPECIFIC_EOI);
  outb(PIC_MASTER_COMMAND, PIC_NONSPECIFIC_EOI);
}

/* --- local APIC ----------------------------------------------------------------------------- */

#define MSR_APIC_BASE 0x1b
#define APIC_BASE_ENABLE (1ul << 11)
#define APIC_BASE_X2APIC (1ul << 10)
#define XAPIC_BASE 0xfee00000ul
#define X2APIC_MSR_BASE 0x800
#define SVR_APIC_ENABLED 0x100
#define SPURIOUS_VECTOR 0xff

static int using_x2apic;

void lapic_write(u32 register_number, u32 value) {
  if (using_x2apic) wrmsr(X2APIC_MSR_BASE + register_number, value);
  else mmio_write(XAPIC_BASE + register_number * 16, value);
}

u32 lapic_read(u32 register_number) {
  if (using_x2apic) return (u32)rdmsr(X2APIC_MSR_BASE + register_number);
  return mmio_read(XAPIC_BASE + register_number * 16);
}

void lapic_enable(int x2apic) {
  if (x2apic) {
    /* xAPIC → x2APIC is the only legal way in (SDM §11.12.5): set EXTD with EN already set. */
    wrmsr(MSR_APIC_BASE, rdmsr(MSR_APIC_BASE) | APIC_BASE_ENABLE | APIC_BASE_X2APIC);
    using_x2apic = 1;
  }
  lapic_write(LAPIC_REG_SVR, SVR_APIC_ENABLED | SPURIOUS_VECTOR);
}

void lapic_send_ipi(u32 destination, u32 command) {
  if (using_x2apic) {
    wrmsr(X2APIC_MSR_BASE + LAPIC_REG_ICR, ((u64)destination << 32) | command);
    return;
  }
  mmio_write(XAPIC_BASE + (LAPIC_REG_ICR + 1) * 16, destination << 24);
  mmio_write(XAPIC_BASE + LAPIC_REG_ICR * 16, command);
}

u32 lapic_id(void) {
  u32 id = lapic_read(0x02);
  return using_x2apic ? id : id >> 24;
}

void lapic_eoi(void) { lapic_write(LAPIC_REG_EOI, 0); }

/* --- IOAPIC --------------------------------------------------------------------------------- */

#define IOAPIC_BASE 0xfec00000ul
#define IOAPIC_REGISTER_SELECT 0x00
#define IOAPIC_WINDOW 0x10
#define IOAPIC_REDIRECTION_FIRST 0x10
#define REDIRECTION_LEVEL (1u << 15)
#define REDIRECTION_MASKED (1u << 16)

static void ioapic_write(u32 index, u32 value) {
  mmio_write(IOAPIC_BASE + IOAPIC_REGISTER_SELECT, index);
  mmio_write(IOAPIC_BASE + IOAPIC_WINDOW, value);
}

void ioapic_route(u8 pin, u8 vector, int level_triggered, u8 destination, int masked) {
  u32 low = vector | (level_triggered ? REDIRECTION_LEVEL : 0) | (masked ? REDIRECTION_MASKED : 0);
  /* Mask while the entry changes, then the high half (destination), then the low half. */
  ioapic_write(IOAPIC_REDIRECTION_FIRST + pin * 2, REDIRECTION_MASKED);
  ioapic_write(IOAPIC_REDIRECTION_FIRST + pin * 2 + 1, (u32)destination << 24);
  ioapic_write(IOAPIC_REDIRECTION_FIRST + pin * 2, low);
}

/* --- reporting ------------------------------------------------------------------------------ */

void report_interrupt(u64 vector) { outl(PORT_REPORT, (u32)vector); }

void fatal(u64 vector) {
  for (;;) {
    outl(PORT_FATAL, (u32)vector);
    cli();
    __asm__ volatile("hlt");
  }
}
