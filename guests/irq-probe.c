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
#define FLAG_START_APS 4u        /* after Ready: INIT, SIPI, SIPI to every other CPU */
#define AP_START_PAGE 0x9000     /* the VMM writes the APs' real-mode code here (irq-probe.ts) */
/* ICR low (SDM §11.6.1): destination shorthand "all excluding self" (bits 19:18 = 3), level
 * assert (bit 14), and the delivery mode: INIT (5) or Start-up (6) with the page number. */
#define ICR_ALL_EXCLUDING_SELF (3u << 18)
#define ICR_ASSERT (1u << 14)
#define ICR_INIT (5u << 8)
#define ICR_STARTUP (6u << 8)
#define STARTUP_SPIN 100000 /* a pause between the IPIs, as the MP start-up sequence asks */
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

static void pause_a_while(void) {
  for (volatile int spin = 0; spin < STARTUP_SPIN; spin++) {
  }
}

/* The MP start-up sequence (SDM vol. 3 §9.4.4.1): INIT, then two Start-up IPIs. */
static void start_application_processors(void) {
  lapic_send_ipi(0, ICR_ALL_EXCLUDING_SELF | ICR_ASSERT | ICR_INIT);
  pause_a_while();
  for (int sipi = 0; sipi < 2; sipi++) {
    lapic_send_ipi(0, ICR_ALL_EXCLUDING_SELF | ICR_ASSERT | ICR_STARTUP | (AP_START_PAGE >> 12));
    pause_a_while();
  }
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
  if (config->flags & FLAG_START_APS) start_application_processors();
  for (;;) sti_hlt();
}
