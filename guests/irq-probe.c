/* irq-probe: the guest of the per-chip-mode delivery tests and benchmarks (src/kvm/irq-probe.ts
 * writes its configuration). It enables its local APIC, programs the 8259A pair and the IOAPIC as
 * configured, reports ready, and then sleeps with interrupts on. Each interrupt's handler reports
 * its vector on PORT_REPORT (the VMM's device treats that as the device being serviced), then
 * EOIs: the 8259A for its vectors, the local APIC for every other. An exception is fatal. */
#include "lib/runtime.h"

#define CONFIG_ADDRESS 0x8000
#define CONFIG_MAGIC 0x50515249 /* "IRQP" */
#define FLAG_X2APIC 1u
#define FLAG_PIC_VIRTUAL_WIRE 2u /* LINT0 in ExtINT mode: the 8259A's INT reaches this CPU */
#define PIC_MASTER_BASE 0x20
#define PIC_SLAVE_BASE 0x28
#define PIC_VECTORS_END 0x30
#define FIRST_EXTERNAL_VECTOR 0x20
#define SPURIOUS_VECTOR 0xff
#define LVT_MASKED 0x10000u
#define LVT_EXTINT 0x700u
#define IOAPIC_PINS 24

struct ioapic_entry_config {
  u8 pin;
  u8 vector;
  u8 level_triggered;
  u8 destination;
};

struct probe_config {
  u32 magic;
  u32 flags;
  u16 pic_unmasked;
  u16 pic_level;
  u32 ioapic_entry_count;
  struct ioapic_entry_config ioapic[IOAPIC_PINS];
  u32 no_eoi_vector; /* a vector whose handler never EOIs (0: none), to observe when EOIs happen */
};

static const volatile struct probe_config *config = (const volatile struct probe_config *)CONFIG_ADDRESS;

void guest_interrupt(u64 vector, u64 error_code) {
  (void)error_code;
  if (vector < FIRST_EXTERNAL_VECTOR) fatal(vector);
  if (vector == SPURIOUS_VECTOR) return; /* a spurious interrupt takes no EOI (SDM §11.9) */
  report_interrupt(vector);
  if (vector == config->no_eoi_vector) return;
  if (vector < PIC_VECTORS_END) pic_eoi((u8)(vector - PIC_MASTER_BASE));
  else lapic_eoi();
}

int main(void) {
  if (config->magic != CONFIG_MAGIC) fatal(0xffff);
  idt_install();
  lapic_enable((config->flags & FLAG_X2APIC) != 0);
  lapic_write(LAPIC_REG_LINT0, (config->flags & FLAG_PIC_VIRTUAL_WIRE) ? LVT_EXTINT : LVT_MASKED);
  pic_init(PIC_MASTER_BASE, PIC_SLAVE_BASE);
  pic_set_elcr(config->pic_level);
  pic_set_mask((u16)~config->pic_unmasked);
  for (u32 index = 0; index < config->ioapic_entry_count && index < IOAPIC_PINS; index++) {
    struct ioapic_entry_config entry = config->ioapic[index];
    ioapic_route(entry.pin, entry.vector, entry.level_triggered, entry.destination, 0);
  }
  outb(PORT_READY, 1);
  for (;;) sti_hlt();
}
