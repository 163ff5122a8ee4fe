/* ioapic-lines: interrupts through the IOAPIC (82093AA datasheet; x86-controllers.md §2) from
 * pc-testdev's lines, one CPU, and when a device's interrupt reaches the CPU.
 *
 * It checks: one delivery per edge, on a PCI-range pin and on an ISA line; an edge on a masked pin
 * is dropped (82093AA §3.2.4: edge requests on a masked pin are ignored); a level line still high
 * at the EOI is delivered again (remote IRR), and no more once the line is low; a level line
 * asserted while masked is held and delivered at unmask; remote IRR is clear once all is done;
 * the version 0x20 IOAPIC's EOI register (where the IOAPIC has one and the local APIC ends
 * interrupts when the handler says so): it clears remote IRR, and with EOI broadcast suppressed
 * (SVR bit 12, where Version bit 24 offers it) only it does. Then the timing rule of a real PC:
 * with interrupts enabled, an interrupt a port write raises is taken before the next instruction
 * (`out` to pc-testdev, then a read of the flag the handler sets), edge and level, through the
 * IOAPIC and through the 8259A (LINT0 virtual wire).
 *
 * When the local APIC ends an interrupt matters for level lines: the first handler reads its
 * vector's ISR bit and prints which local APIC this is (irqtest.h lapic_ended_at_delivery). With
 * the SDM's (the handler's EOI ends it), a level line the handler lowers is delivered exactly as
 * often as it was high at an EOI. With the EOI at delivery (KVM's local APIC on a PVM host,
 * docs/architecture.md decision 32), the IOAPIC sees the EOI while the line is still high and
 * delivers once more after the handler lowered it; the guest counts that delivery apart (its line
 * was already low) and allows exactly that one, never more. */
#include "lib/irqtest.h"
#include "lib/timing.h"

#define PIN_EDGE 16
#define PIN_ISA_EDGE 5
#define PIN_MASKED_EDGE 22
#define PIN_LEVEL 17
#define PIN_MASKED_LEVEL 18
#define PIN_EOI_REGISTER 19
#define PIN_TIMING_EDGE 20
#define PIN_TIMING_LEVEL 21
#define PIC_LINE_TIMING_EDGE 3
#define PIC_LINE_TIMING_LEVEL 10
#define VECTOR_EDGE 0x50
#define VECTOR_ISA_EDGE 0x51
#define VECTOR_MASKED_EDGE 0x52
#define VECTOR_LEVEL 0x60
#define VECTOR_MASKED_LEVEL 0x61
#define VECTOR_EOI_REGISTER 0x62
#define VECTOR_TIMING_EDGE 0x70
#define VECTOR_TIMING_LEVEL 0x71
#define EDGES 5
#define TIMING_ROUNDS 8
#define DELIVERY_TIMEOUT_US 500000
#define QUIET_US 20000
#define BSP_DESTINATION 0
#define EDGE 0
#define LEVEL 1

/* Per pin (IOAPIC pins 0-23; the 8259A's lines are counted at 24 + IRQ). */
#define PIC_SLOT(irq) (IOAPIC_PINS + (irq))
#define SLOTS (IOAPIC_PINS + 16)
static volatile int line_high[SLOTS];
static volatile u32 high_deliveries[SLOTS];  /* deliveries while the guest held the line high */
static volatile u32 stale_deliveries[SLOTS]; /* deliveries after the guest had lowered it */
static volatile u32 lower_at[SLOTS];         /* the high delivery whose handler lowers the line */
static volatile u32 entry_in_handler[SLOTS]; /* the RTE's low half, read in the handler */
static volatile u32 timing_flag;
/* How the local APIC ends interrupts, as the first handler saw it; -1 until then. */
static volatile int eoi_at_delivery = -1;
static volatile u32 eoi_timing_changes;
/* The EOI-register checks: what the handler does besides the LAPIC EOI. */
static volatile int eoi_register_in_handler;
static volatile u32 entry_after_eoi_register;

static void set_line(u32 slot, int level) {
  line_high[slot] = level;
  testdev_set_irq(slot >= IOAPIC_PINS ? slot - IOAPIC_PINS : slot, level);
}

static void count_delivery(u32 slot) {
  if (!line_high[slot]) {
    stale_deliveries[slot]++;
    return;
  }
  high_deliveries[slot]++;
  if (high_deliveries[slot] == lower_at[slot]) set_line(slot, 0);
}

static void handle_ioapic_pin(u32 pin, u32 vector) {
  int ended = lapic_ended_at_delivery(vector);
  if (eoi_at_delivery < 0) eoi_at_delivery = ended;
  else if (ended != eoi_at_delivery) eoi_timing_changes++;
  entry_in_handler[pin] = ioapic_entry_low(pin);
  if (pin == PIN_TIMING_EDGE || pin == PIN_TIMING_LEVEL) timing_flag = 1;
  count_delivery(pin);
  if (pin == PIN_EOI_REGISTER && eoi_register_in_handler) {
    /* Lowered first, so that the register's EOI re-delivers nothing and remote IRR stays clear. */
    set_line(pin, 0);
    mmio_write(IOAPIC_MMIO_BASE + IOAPIC_MMIO_EOI, vector);
    entry_after_eoi_register = ioapic_entry_low(pin);
    eoi_register_in_handler = 0;
  }
  lapic_eoi();
}

static void handle_pic_irq(u32 irq) {
  timing_flag = 1;
  count_delivery(PIC_SLOT(irq));
  pic_eoi((u8)irq);
}

void guest_interrupt(u64 vector, u64 error_code) {
  switch (vector) {
    case VECTOR_EDGE: handle_ioapic_pin(PIN_EDGE, VECTOR_EDGE); return;
    case VECTOR_ISA_EDGE: handle_ioapic_pin(PIN_ISA_EDGE, VECTOR_ISA_EDGE); return;
    case VECTOR_MASKED_EDGE: handle_ioapic_pin(PIN_MASKED_EDGE, VECTOR_MASKED_EDGE); return;
    case VECTOR_LEVEL: handle_ioapic_pin(PIN_LEVEL, VECTOR_LEVEL); return;
    case VECTOR_MASKED_LEVEL: handle_ioapic_pin(PIN_MASKED_LEVEL, VECTOR_MASKED_LEVEL); return;
    case VECTOR_EOI_REGISTER: handle_ioapic_pin(PIN_EOI_REGISTER, VECTOR_EOI_REGISTER); return;
    case VECTOR_TIMING_EDGE: handle_ioapic_pin(PIN_TIMING_EDGE, VECTOR_TIMING_EDGE); return;
    case VECTOR_TIMING_LEVEL: handle_ioapic_pin(PIN_TIMING_LEVEL, VECTOR_TIMING_LEVEL); return;
    case PIC_MASTER_VECTOR_BASE + PIC_LINE_TIMING_EDGE: handle_pic_irq(PIC_LINE_TIMING_EDGE); return;
    case PIC_MASTER_VECTOR_BASE + PIC_LINE_TIMING_LEVEL: handle_pic_irq(PIC_LINE_TIMING_LEVEL); return;
  }
  if (vector < PIC_MASTER_VECTOR_BASE) unexpected_exception(vector, error_code);
  unexpected_vector(vector);
}

static void pulse(u32 slot) {
  set_line(slot, 1);
  set_line(slot, 0);
}

/* Deliveries after the line was lowered that the host's local APIC explains: with the EOI at
 * delivery the IOAPIC saw the EOI of the delivery whose handler lowered the line while the line
 * was still high, and delivered once more. */
static u32 allowed_stale(void) { return eoi_at_delivery == 1 ? 1 : 0; }

/* The timing rule: `out` raises the line, and the very next instruction reads the flag the
 * handler sets. Returns how many of TIMING_ROUNDS rounds read 0 (the interrupt came later). */
static u32 late_injections(u32 slot, int handler_lowers) {
  u32 late = 0;
  u16 port = (u16)(PORT_TESTDEV_IRQ + (slot >= IOAPIC_PINS ? slot - IOAPIC_PINS : slot));
  for (u32 round = 0; round < TIMING_ROUNDS; round++) {
    timing_flag = 0;
    line_high[slot] = 1;
    lower_at[slot] = handler_lowers ? high_deliveries[slot] + 1 : 0;
    u32 seen;
    __asm__ volatile("outb %%al, %%dx\n\t"
                     "movl %[flag], %[seen]"
                     : [seen] "=r"(seen)
                     : "a"((u8)1), "d"(port), [flag] "m"(timing_flag)
                     : "memory");
    if (!seen) late++;
    (void)WAIT_FOR(timing_flag != 0, DELIVERY_TIMEOUT_US);
    if (!handler_lowers) set_line(slot, 0);
    delay_us(QUIET_US / 4);
  }
  return late;
}

int main(void) {
  serial_init();
  idt_install();
  printf("ioapic-lines: IOAPIC edge and level lines through pc-testdev, and when their interrupts are taken\n");
  CHECK(1, timing_init() == 0, "the TSC calibrates against PIT counter 2 (%lu ticks/ms)", tsc_per_ms());
  lapic_enable(0);
  lapic_write(LAPIC_REG_LINT0, LVT_EXTINT);
  pic_init(PIC_MASTER_VECTOR_BASE, PIC_SLAVE_VECTOR_BASE);
  u32 version = ioapic_register_read(IOAPIC_REG_VERSION);
  u32 pins = ((version >> 16) & 0xff) + 1;
  CHECK(2, pins >= IOAPIC_PINS, "the IOAPIC (version 0x%x) has %u pins", version & 0xff, pins);
  sti();

  /* Edges. */
  ioapic_route(PIN_EDGE, VECTOR_EDGE, EDGE, BSP_DESTINATION, 0);
  for (u32 edge = 1; edge <= EDGES; edge++) {
    pulse(PIN_EDGE);
    (void)WAIT_FOR(high_deliveries[PIN_EDGE] + stale_deliveries[PIN_EDGE] == edge, DELIVERY_TIMEOUT_US);
  }
  delay_us(QUIET_US);
  report_eoi_timing(eoi_at_delivery);
  CHECK(3, high_deliveries[PIN_EDGE] + stale_deliveries[PIN_EDGE] == EDGES, "%u edges on pin 16, %u deliveries", EDGES, high_deliveries[PIN_EDGE] + stale_deliveries[PIN_EDGE]);
  ioapic_route(PIN_ISA_EDGE, VECTOR_ISA_EDGE, EDGE, BSP_DESTINATION, 0);
  pulse(PIN_ISA_EDGE);
  CHECK(4, WAIT_FOR(high_deliveries[PIN_ISA_EDGE] + stale_deliveries[PIN_ISA_EDGE] == 1, DELIVERY_TIMEOUT_US), "an edge on ISA line 5 reaches IOAPIC pin 5 (8259A masked)");
  ioapic_route(PIN_MASKED_EDGE, VECTOR_MASKED_EDGE, EDGE, BSP_DESTINATION, 1);
  pulse(PIN_MASKED_EDGE);
  ioapic_set_masked(PIN_MASKED_EDGE, 0);
  delay_us(QUIET_US);
  CHECK(5, high_deliveries[PIN_MASKED_EDGE] + stale_deliveries[PIN_MASKED_EDGE] == 0, "an edge on masked pin 22 is dropped: nothing at unmask");

  /* A level line still high at the EOI. */
  ioapic_route(PIN_LEVEL, VECTOR_LEVEL, LEVEL, BSP_DESTINATION, 0);
  lower_at[PIN_LEVEL] = 2;
  set_line(PIN_LEVEL, 1);
  (void)WAIT_FOR(high_deliveries[PIN_LEVEL] == 2, DELIVERY_TIMEOUT_US);
  delay_us(QUIET_US);
  CHECK(6, high_deliveries[PIN_LEVEL] == 2, "level pin 17, still high at the first EOI, is delivered again (%u deliveries while high)", high_deliveries[PIN_LEVEL]);
  CHECK(7, stale_deliveries[PIN_LEVEL] <= allowed_stale(), "once the handler lowered it, %u more (this local APIC allows %u)", stale_deliveries[PIN_LEVEL], allowed_stale());
  if (!eoi_at_delivery)
    CHECK(8, entry_in_handler[PIN_LEVEL] & RTE_REMOTE_IRR, "remote IRR is set while the handler runs (RTE 0x%x)", entry_in_handler[PIN_LEVEL]);
  CHECK(9, !(ioapic_entry_low(PIN_LEVEL) & RTE_REMOTE_IRR), "remote IRR is clear at the end (RTE 0x%x)", ioapic_entry_low(PIN_LEVEL));

  /* A level line asserted while masked. */
  ioapic_route(PIN_MASKED_LEVEL, VECTOR_MASKED_LEVEL, LEVEL, BSP_DESTINATION, 1);
  lower_at[PIN_MASKED_LEVEL] = 1;
  set_line(PIN_MASKED_LEVEL, 1);
  delay_us(QUIET_US);
  CHECK(10, high_deliveries[PIN_MASKED_LEVEL] == 0 && !(ioapic_entry_low(PIN_MASKED_LEVEL) & RTE_REMOTE_IRR), "level pin 18 asserted while masked is held: nothing delivered (RTE 0x%x)", ioapic_entry_low(PIN_MASKED_LEVEL));
  ioapic_set_masked(PIN_MASKED_LEVEL, 0);
  CHECK(11, WAIT_FOR(high_deliveries[PIN_MASKED_LEVEL] == 1, DELIVERY_TIMEOUT_US), "unmasking it, still high, delivers it");
  delay_us(QUIET_US);
  CHECK(12, high_deliveries[PIN_MASKED_LEVEL] == 1 && stale_deliveries[PIN_MASKED_LEVEL] <= allowed_stale(), "once, and the handler lowered it (%u more after, %u allowed)", stale_deliveries[PIN_MASKED_LEVEL], allowed_stale());

  /* The EOI register of a version 0x20 IOAPIC (ICH-style; 82093AA has none). */
  u32 lapic_version = lapic_read(LAPIC_VERSION);
  if ((version & 0xff) < IOAPIC_VERSION_WITH_EOI) {
    printf("IOAPIC EOI register: none in version 0x%x (82093AA)\n", version & 0xff);
  } else if (eoi_at_delivery) {
    printf("IOAPIC EOI register: not observable here, the local APIC ends each interrupt before its handler runs\n");
  } else {
    ioapic_route(PIN_EOI_REGISTER, VECTOR_EOI_REGISTER, LEVEL, BSP_DESTINATION, 0);
    eoi_register_in_handler = 1;
    set_line(PIN_EOI_REGISTER, 1);
    (void)WAIT_FOR(high_deliveries[PIN_EOI_REGISTER] == 1, DELIVERY_TIMEOUT_US);
    delay_us(QUIET_US);
    CHECK(13, (entry_in_handler[PIN_EOI_REGISTER] & RTE_REMOTE_IRR) && !(entry_after_eoi_register & RTE_REMOTE_IRR), "in the handler, writing the vector to the EOI register clears remote IRR (RTE 0x%x, then 0x%x)", entry_in_handler[PIN_EOI_REGISTER], entry_after_eoi_register);
    CHECK(14, high_deliveries[PIN_EOI_REGISTER] == 1 && stale_deliveries[PIN_EOI_REGISTER] == 0, "the line, lowered before, is not delivered again (%u, then %u)", high_deliveries[PIN_EOI_REGISTER], stale_deliveries[PIN_EOI_REGISTER]);
    if (lapic_version & LAPIC_VERSION_EOI_SUPPRESSION) {
      lapic_write(LAPIC_REG_SVR, lapic_read(LAPIC_REG_SVR) | SVR_SUPPRESS_EOI_BROADCAST);
      lower_at[PIN_EOI_REGISTER] = 3;
      set_line(PIN_EOI_REGISTER, 1);
      (void)WAIT_FOR(high_deliveries[PIN_EOI_REGISTER] == 2, DELIVERY_TIMEOUT_US);
      delay_us(QUIET_US);
      CHECK(15, high_deliveries[PIN_EOI_REGISTER] == 2 && (ioapic_entry_low(PIN_EOI_REGISTER) & RTE_REMOTE_IRR), "with EOI broadcast suppressed (SVR bit 12) the local APIC's EOI leaves remote IRR set: the still-high line waits (RTE 0x%x)", ioapic_entry_low(PIN_EOI_REGISTER));
      mmio_write(IOAPIC_MMIO_BASE + IOAPIC_MMIO_EOI, VECTOR_EOI_REGISTER);
      CHECK(16, WAIT_FOR(high_deliveries[PIN_EOI_REGISTER] == 3, DELIVERY_TIMEOUT_US), "the EOI register's write ends it, and the still-high line is delivered again");
      mmio_write(IOAPIC_MMIO_BASE + IOAPIC_MMIO_EOI, VECTOR_EOI_REGISTER);
      delay_us(QUIET_US);
      CHECK(17, high_deliveries[PIN_EOI_REGISTER] == 3 && stale_deliveries[PIN_EOI_REGISTER] == 0 && !(ioapic_entry_low(PIN_EOI_REGISTER) & RTE_REMOTE_IRR), "lowered and ended by the register, it rests (RTE 0x%x)", ioapic_entry_low(PIN_EOI_REGISTER));
      lapic_write(LAPIC_REG_SVR, lapic_read(LAPIC_REG_SVR) & ~SVR_SUPPRESS_EOI_BROADCAST);
    } else {
      printf("EOI broadcast suppression: not offered (local APIC version 0x%x)\n", lapic_version);
    }
  }

  /* The timing rule, through the IOAPIC and through the 8259A. */
  ioapic_route(PIN_TIMING_EDGE, VECTOR_TIMING_EDGE, EDGE, BSP_DESTINATION, 0);
  ioapic_route(PIN_TIMING_LEVEL, VECTOR_TIMING_LEVEL, LEVEL, BSP_DESTINATION, 0);
  u32 late = late_injections(PIN_TIMING_EDGE, 0);
  CHECK(18, late == 0, "an IOAPIC edge raised by `out` is taken before the next instruction (%u of %u rounds late)", late, TIMING_ROUNDS);
  late = late_injections(PIN_TIMING_LEVEL, 1);
  CHECK(19, late == 0, "an IOAPIC level line raised by `out` is taken before the next instruction (%u of %u rounds late)", late, TIMING_ROUNDS);
  pic_set_elcr(1u << PIC_LINE_TIMING_LEVEL);
  pic_set_mask((u16) ~((1u << PIC_LINE_TIMING_EDGE) | (1u << PIC_CASCADE_IRQ) | (1u << PIC_LINE_TIMING_LEVEL)));
  late = late_injections(PIC_SLOT(PIC_LINE_TIMING_EDGE), 0);
  CHECK(20, late == 0, "an 8259A edge raised by `out` is taken before the next instruction (%u of %u rounds late)", late, TIMING_ROUNDS);
  late = late_injections(PIC_SLOT(PIC_LINE_TIMING_LEVEL), 1);
  CHECK(21, late == 0, "an 8259A level line raised by `out` is taken before the next instruction (%u of %u rounds late)", late, TIMING_ROUNDS);
  pic_set_mask(0xffff);
  delay_us(QUIET_US);
  u32 stale = stale_deliveries[PIN_TIMING_LEVEL];
  CHECK(22, stale <= TIMING_ROUNDS * allowed_stale() && stale_deliveries[PIC_SLOT(PIC_LINE_TIMING_LEVEL)] == 0, "the IOAPIC level rounds left %u deliveries after their lines fell (this local APIC allows %u), the 8259A's none (%u)", stale, TIMING_ROUNDS * allowed_stale(), stale_deliveries[PIC_SLOT(PIC_LINE_TIMING_LEVEL)]);
  CHECK(23, eoi_timing_changes == 0, "every handler saw the same local APIC behaviour");
  cli();
  all_checks_passed("ioapic-lines");
}
