#include "irqtest.h"

/* --- reporting ------------------------------------------------------------------------------ */

void all_checks_passed(const char *guest) {
  printf("%s: all checks passed\n", guest);
  debug_exit(0);
}

void unexpected_exception(u64 vector, u64 error_code) {
  printf("FAIL: unexpected exception %lu (error code 0x%lx)\n", vector, error_code);
  debug_exit(EXIT_EXCEPTION_BASE + (u32)vector);
}

void unexpected_vector(u64 vector) {
  printf("FAIL: unexpected interrupt, vector 0x%lx\n", vector);
  debug_exit(EXIT_UNEXPECTED_VECTOR);
}

/* --- 8259A ---------------------------------------------------------------------------------- */

static u16 pic_read_both(u8 ocw3) {
  outb(PIC_MASTER_COMMAND, ocw3);
  outb(PIC_SLAVE_COMMAND, ocw3);
  return (u16)(inb(PIC_MASTER_COMMAND) | (inb(PIC_SLAVE_COMMAND) << 8));
}

u16 pic_read_irr(void) { return pic_read_both(PIC_OCW3_READ_IRR); }
u16 pic_read_isr(void) { return pic_read_both(PIC_OCW3_READ_ISR); }
u16 pic_read_mask(void) { return (u16)(inb(PIC_MASTER_DATA) | (inb(PIC_SLAVE_DATA) << 8)); }

/* --- IOAPIC --------------------------------------------------------------------------------- */

#define IOAPIC_REGISTER_SELECT 0x00
#define IOAPIC_WINDOW 0x10

u32 ioapic_register_read(u32 index) {
  mmio_write(IOAPIC_MMIO_BASE + IOAPIC_REGISTER_SELECT, index);
  return mmio_read(IOAPIC_MMIO_BASE + IOAPIC_WINDOW);
}

void ioapic_register_write(u32 index, u32 value) {
  mmio_write(IOAPIC_MMIO_BASE + IOAPIC_REGISTER_SELECT, index);
  mmio_write(IOAPIC_MMIO_BASE + IOAPIC_WINDOW, value);
}

u32 ioapic_entry_low(u32 pin) { return ioapic_register_read(IOAPIC_REG_REDIRECTION + pin * 2); }

void ioapic_set_masked(u32 pin, int masked) {
  u32 low = ioapic_entry_low(pin);
  ioapic_register_write(IOAPIC_REG_REDIRECTION + pin * 2, masked ? low | RTE_MASKED : low & ~RTE_MASKED);
}

/* --- local APIC ----------------------------------------------------------------------------- */

#define VECTORS_PER_REGISTER 32
#define VECTOR_COUNT 256

int lapic_vector_bit(u32 first_register, u32 vector) {
  return (lapic_read(first_register + vector / VECTORS_PER_REGISTER) >> (vector % VECTORS_PER_REGISTER)) & 1;
}

static int lapic_any_in_service(void) {
  for (u32 index = 0; index < VECTOR_COUNT / VECTORS_PER_REGISTER; index++)
    if (lapic_read(LAPIC_ISR + index) != 0) return 1;
  return 0;
}

u32 lapic_eoi_all(void) {
  u32 ended = 0;
  while (ended < VECTOR_COUNT && lapic_any_in_service()) {
    lapic_eoi();
    ended++;
  }
  return ended;
}

int lapic_ended_at_delivery(u32 vector) { return !lapic_in_service(vector); }

void report_eoi_timing(int ended_at_delivery) {
  if (ended_at_delivery)
    printf("local APIC: EOI at delivery (ISR clear in the handler: the host's APIC, docs/architecture.md decision 32)\n");
  else
    printf("local APIC: EOI by the handler (ISR set in the handler, SDM 11.8.4)\n");
}
