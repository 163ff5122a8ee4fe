/* misbehave: a guest that does to the interrupt controllers what no driver should, to show that
 * the VMM survives it and counts it. One CPU. Every phase ends by putting the controller back in
 * order, and the guest finally checks that interrupts still work and exits with
 * MISBEHAVE_SURVIVED (never 0: this guest passing means "it misbehaved and the VMM lived").
 *
 *   1. garbage to every 8259A port (ICWs out of order, OCWs, polls, ELCR), then ICW1-4 again;
 *   2. garbage to every IOAPIC register through IOREGSEL/IOWIN, reserved indices included, and
 *      accesses of every size at offsets across the IOAPIC's page; then every pin masked;
 *   3. garbage to every xAPIC register and the reserved offsets, and accesses of odd sizes and
 *      alignments to the read-only and reserved ones; then the APIC back in order. ICR low is
 *      left to phase 4 and LVT entries get the mask bit: a random INIT, SMI or NMI aimed at this
 *      CPU would reset it or take it away, which tests nothing of the VMM's;
 *   4. IPIs to APIC IDs nobody has (physical, logical, lowest priority, NMI, INIT, SIPI), the
 *      broadcast shorthands, and fixed IPIs with the illegal vectors 0-15 (those without a CPU
 *      error code: an error-code vector taken as an interrupt would unbalance the handler's stack);
 *   5. pc-testdev accesses past its last line;
 *   6. a level line held high whose handler never EOIs and never lowers it, for a while;
 *   7. self-IPIs of rising priority that nobody EOIs, for a while, and one of lower priority;
 *   8. a storm of edges on one line.
 *
 * What the guest can check itself, it checks (failure codes 1-94): the controllers work again
 * after each phase, and where the local APIC ends interrupts when the handler says so (the SDM's),
 * that a held level line and unEOIed vectors block what they should. Where the host's local APIC
 * ends interrupts at delivery (docs/architecture.md decision 32), phase 6 is a real interrupt
 * storm, which the guest must outlast (the IOAPIC's storm limiter, x86-controllers.md §2.8). */
#include "lib/irqtest.h"
#include "lib/timing.h"

#define MISBEHAVE_SURVIVED 0x33
#define SEED 0x2545f491u
#define PIC_PORT_WRITES 64
#define PAGE_BYTES 0x1000 /* the IOAPIC's window and the xAPIC page alike */
#define IOAPIC_RANDOM_ACCESSES 256
#define IOAPIC_INDICES 256
#define XAPIC_BASE 0xfee00000ul
#define XAPIC_REGISTERS 64 /* 0x000-0x3f0, 16 bytes apart */
#define XAPIC_RANDOM_ACCESSES 256
#define XAPIC_ICR_LOW 0x300
#define XAPIC_ICR_HIGH 0x310
#define ABSENT_IDS 8
#define STORM_PIN 20
#define STORM_VECTOR 0x70
#define STORM_MS 100
#define EDGE_PIN 16
#define EDGE_VECTOR 0x50
#define EDGE_STORM 500
#define SELF_VECTOR 0x40
#define BROADCAST_VECTOR 0x41
#define ABSENT_VECTOR 0x42
#define HELD_VECTOR 0x45
#define FIRST_NESTED_VECTOR 0x5f /* the last of each class from 5 to 14, used by nothing else */
#define LAST_NESTED_VECTOR 0xef
#define NESTED_STEP 0x10
#define ILLEGAL_VECTOR_LIMIT 16
#define TESTDEV_PAST_END_PORT (PORT_TESTDEV_IRQ + TESTDEV_IRQ_LINES - 2) /* a dword write covers 22, 23 and 2 bytes past */
#define DELIVERY_TIMEOUT_US 500000
#define QUIET_US 20000
#define RFLAGS_IF (1ul << 9)
#define PIC_OCW2_NONSPECIFIC_EOI 0x20

static u32 random_state = SEED;
static volatile u32 deliveries[256];
static volatile int taking_illegal_vectors;
static volatile int handler_eois = 1;
static volatile int eoi_at_delivery = -1;

/* xorshift32 (Marsaglia): the same garbage on every run. */
static u32 random32(void) {
  random_state ^= random_state << 13;
  random_state ^= random_state >> 17;
  random_state ^= random_state << 5;
  return random_state;
}

/* Vectors 8, 10-14, 17, 21, 29 and 30 come with an error code from the CPU (SDM vol. 3 §6.13). */
static int has_error_code(u32 vector) { return vector == 8 || (vector >= 10 && vector <= 14) || vector == 17 || vector == 21 || vector == 29 || vector == 30; }

void guest_interrupt(u64 vector, u64 error_code) {
  if (vector < PIC_MASTER_VECTOR_BASE && !(taking_illegal_vectors && vector < ILLEGAL_VECTOR_LIMIT)) unexpected_exception(vector, error_code);
  if (vector == SPURIOUS_VECTOR) {
    deliveries[vector]++;
    return; /* takes no EOI (SDM 11.9) */
  }
  if (eoi_at_delivery < 0 && vector >= PIC_MASTER_VECTOR_BASE) eoi_at_delivery = lapic_ended_at_delivery((u32)vector);
  deliveries[vector]++;
  if (vector == STORM_VECTOR || !handler_eois) return;
  lapic_eoi();
}

static u64 interrupts_off(void) {
  u64 flags;
  __asm__ volatile("pushfq; popq %0; cli" : "=r"(flags) : : "memory");
  return flags;
}

static void interrupts_restore(u64 flags) {
  if (flags & RFLAGS_IF) sti();
}

/* An access of 1, 2, 4 or 8 bytes at `address`. */
static void random_write(u64 address, u32 size, u64 value) {
  switch (size) {
    case 1: *(volatile u8 *)address = (u8)value; break;
    case 2: *(volatile u16 *)address = (u16)value; break;
    case 4: *(volatile u32 *)address = (u32)value; break;
    default: *(volatile u64 *)address = value; break;
  }
}

static u64 random_read(u64 address, u32 size) {
  switch (size) {
    case 1: return *(volatile u8 *)address;
    case 2: return *(volatile u16 *)address;
    case 4: return *(volatile u32 *)address;
    default: return *(volatile u64 *)address;
  }
}

static u32 random_size(void) { return 1u << (random32() & 3); }

static void garbage_to_pic(void) {
  static const u16 ports[] = {PIC_MASTER_COMMAND, PIC_MASTER_DATA, PIC_SLAVE_COMMAND, PIC_SLAVE_DATA, PIC_ELCR_MASTER, PIC_ELCR_SLAVE};
  u64 flags = interrupts_off();
  for (u32 write = 0; write < PIC_PORT_WRITES; write++)
    for (u32 index = 0; index < sizeof ports / sizeof ports[0]; index++) {
      outb(ports[index], (u8)random32());
      (void)inb(ports[random32() % (sizeof ports / sizeof ports[0])]);
    }
  pic_init(PIC_MASTER_VECTOR_BASE, PIC_SLAVE_VECTOR_BASE);
  pic_set_elcr(0);
  /* ICW1 clears neither a pending poll command nor ISR (8259A datasheet: it clears the IMR and
   * selects IRR for status reads), and the garbage may have left both: a poll command makes the
   * next read of either port the poll's answer (an acknowledge, which puts an IRQ in service), so
   * read each chip once, then EOI whatever is in service, as a driver recovering would. */
  (void)inb(PIC_MASTER_COMMAND);
  (void)inb(PIC_SLAVE_COMMAND);
  for (u32 irq = 0; irq < 8; irq++) {
    outb(PIC_SLAVE_COMMAND, PIC_OCW2_NONSPECIFIC_EOI);
    outb(PIC_MASTER_COMMAND, PIC_OCW2_NONSPECIFIC_EOI);
  }
  interrupts_restore(flags);
}

static void garbage_to_ioapic(void) {
  u64 flags = interrupts_off();
  for (u32 index = 0; index < IOAPIC_INDICES; index++) {
    ioapic_register_write(index, random32());
    (void)ioapic_register_read(index);
  }
  for (u32 access = 0; access < IOAPIC_RANDOM_ACCESSES; access++) {
    u32 size = random_size();
    u64 address = IOAPIC_MMIO_BASE + random32() % (PAGE_BYTES - size + 1);
    if (random32() & 1) random_write(address, size, ((u64)random32() << 32) | random32());
    else (void)random_read(address, size);
  }
  for (u32 pin = 0; pin < IOAPIC_PINS; pin++) ioapic_route((u8)pin, 0, 0, 0, 1);
  interrupts_restore(flags);
}

static int is_lvt(u32 offset) { return offset == 0x2f0 || (offset >= 0x320 && offset <= 0x370); }
/* Read-only and reserved offsets (SDM Table 11-1): writes there must change nothing. */
static int is_read_only_or_reserved(u32 offset) {
  return offset < 0x20 || (offset >= 0x40 && offset < 0x80) || offset == 0x90 || offset == 0xa0 || offset == 0xc0 || (offset >= 0x100 && offset < 0x280) ||
         (offset >= 0x290 && offset < 0x2f0) || (offset >= 0x3a0 && offset < 0x3e0) || offset >= 0x3f0;
}

static void garbage_to_xapic(void) {
  u64 flags = interrupts_off();
  u32 id = lapic_read(LAPIC_ID);
  u32 svr = lapic_read(LAPIC_REG_SVR);
  for (u32 offset = 0; offset < XAPIC_REGISTERS * 16; offset += 16) {
    if (offset == XAPIC_ICR_LOW) continue;
    u32 value = random32();
    mmio_write(XAPIC_BASE + offset, is_lvt(offset) ? value | LVT_MASKED : value);
    (void)mmio_read(XAPIC_BASE + offset);
  }
  for (u32 access = 0; access < XAPIC_RANDOM_ACCESSES; access++) {
    u32 size = random_size();
    u32 offset = random32() % (PAGE_BYTES - size + 1);
    if (random32() & 1) {
      if (is_read_only_or_reserved(offset & ~0xfu) && is_read_only_or_reserved((offset + size - 1) & ~0xfu)) random_write(XAPIC_BASE + offset, size, ((u64)random32() << 32) | random32());
    } else {
      (void)random_read(XAPIC_BASE + offset, size);
    }
  }
  /* Back in order: the ID, enabled with the spurious vector, everything masked, no timer. */
  lapic_write(LAPIC_ID, id);
  lapic_write(LAPIC_REG_SVR, svr);
  lapic_write(LAPIC_TIMER_INITIAL, 0);
  for (u32 offset = 0x320; offset <= 0x370; offset += 16) mmio_write(XAPIC_BASE + offset, LVT_MASKED);
  lapic_write(LAPIC_TPR, 0);
  lapic_write(LAPIC_DFR, DFR_FLAT);
  lapic_write(LAPIC_LDR, 1u << 24);
  lapic_write(LAPIC_ESR, 0);
  interrupts_restore(flags);
}

/* Reads and writes that start on the last bytes of a controller's page and end on the next page,
 * where nothing is: KVM's emulator splits such an access at the page boundary (x86.c
 * emulator_read_write), so the VMM sees MMIO exits of 1 to 7 bytes. A write goes to reserved or
 * unclaimed bytes only. */
static void across_page_end(u64 page) {
  u64 flags = interrupts_off();
  for (u32 size = 2; size <= 8; size *= 2)
    for (u32 before_end = 1; before_end < size; before_end++) {
      u64 address = page + PAGE_BYTES - before_end;
      (void)random_read(address, size);
      random_write(address, size, ((u64)random32() << 32) | random32());
    }
  interrupts_restore(flags);
}

static void send(u32 destination, u32 command) { lapic_send_ipi(destination, command | ICR_ASSERT); }

int main(void) {
  serial_init();
  idt_install();
  printf("misbehave: garbage to every controller, IPIs to nobody, a level storm, no EOIs; the VMM must live\n");
  CHECK(1, timing_init() == 0, "the TSC calibrates against PIT counter 2 (%lu ticks/ms)", tsc_per_ms());
  lapic_enable(0);
  u32 bsp_id = lapic_id();
  sti();

  garbage_to_pic();
  CHECK(2, pic_read_mask() == 0xffff && pic_read_isr() == 0, "8259A: after %u garbage writes to each port, ICW1-4 and EOIs bring it back (IMR 0x%x, ISR 0x%x)", PIC_PORT_WRITES, pic_read_mask(), pic_read_isr());

  garbage_to_ioapic();
  ioapic_route(EDGE_PIN, EDGE_VECTOR, 0, (u8)bsp_id, 0);
  testdev_set_irq(EDGE_PIN, 1);
  testdev_set_irq(EDGE_PIN, 0);
  CHECK(3, WAIT_FOR(deliveries[EDGE_VECTOR] == 1, DELIVERY_TIMEOUT_US), "IOAPIC: after garbage in all %u indices and %u random accesses, an edge on pin %u is delivered", IOAPIC_INDICES, IOAPIC_RANDOM_ACCESSES, EDGE_PIN);

  garbage_to_xapic();
  across_page_end(IOAPIC_MMIO_BASE);
  across_page_end(XAPIC_BASE);
  printf("accesses of 2, 4 and 8 bytes across the end of the IOAPIC's and the local APIC's pages\n");
  send(0, ICR_FIXED | ICR_SELF | SELF_VECTOR);
  CHECK(4, WAIT_FOR(deliveries[SELF_VECTOR] == 1, DELIVERY_TIMEOUT_US), "local APIC: after garbage in every register and reserved offset, a self-IPI is delivered (ID %u)", lapic_id());
  report_eoi_timing(eoi_at_delivery);

  /* IPIs to nobody, broadcasts, illegal vectors. */
  for (u32 absent = 1; absent <= ABSENT_IDS; absent++) {
    u32 destination = (bsp_id + absent * 31) % XAPIC_BROADCAST;
    if (destination == bsp_id) continue;
    send(destination, ICR_FIXED | ABSENT_VECTOR);
    send(destination, ICR_LOWEST_PRIORITY | ABSENT_VECTOR);
    send(destination, ICR_NMI);
    send(destination, ICR_INIT);
    send(destination, ICR_STARTUP | 0x10);
  }
  send(0xfe, ICR_FIXED | ICR_LOGICAL | ABSENT_VECTOR);
  send(0xfe, ICR_LOWEST_PRIORITY | ICR_LOGICAL | ABSENT_VECTOR);
  send(0, ICR_FIXED | ICR_ALL_EXCLUDING_SELF | ABSENT_VECTOR);
  send(0, ICR_FIXED | ICR_ALL_INCLUDING_SELF | BROADCAST_VECTOR);
  send(XAPIC_BROADCAST, ICR_FIXED | BROADCAST_VECTOR);
  delay_us(QUIET_US);
  CHECK(5, deliveries[ABSENT_VECTOR] == 0 && deliveries[BROADCAST_VECTOR] >= 1 && deliveries[BROADCAST_VECTOR] <= 2, "IPIs to %u absent APIC IDs reach nobody; the two broadcasts reach this CPU (%u: one IRR bit may hold both)", ABSENT_IDS, deliveries[BROADCAST_VECTOR]);
  taking_illegal_vectors = 1;
  u32 illegal_sent = 0;
  for (u32 vector = 0; vector < ILLEGAL_VECTOR_LIMIT; vector++) {
    if (has_error_code(vector)) continue;
    send(0, ICR_FIXED | ICR_SELF | vector);
    illegal_sent++;
  }
  delay_us(QUIET_US);
  taking_illegal_vectors = 0;
  u32 illegal_taken = 0;
  for (u32 vector = 0; vector < ILLEGAL_VECTOR_LIMIT; vector++) illegal_taken += deliveries[vector];
  lapic_write(LAPIC_ESR, 0);
  printf("illegal vectors 0-15: %u self-IPIs sent, %u delivered; ESR 0x%x (SDM 11.5.3: illegal, not accepted; ESR bit 5, send illegal vector)\n", illegal_sent, illegal_taken, lapic_read(LAPIC_ESR));
  CHECK(6, eoi_at_delivery || illegal_taken == 0, "the SDM's local APIC accepts no vector below 16");

  /* pc-testdev past its last line. */
  outl(TESTDEV_PAST_END_PORT, 0);
  printf("pc-testdev: a dword write at 0x%x, two bytes past its last line\n", TESTDEV_PAST_END_PORT);

  /* A level line nobody ends. */
  ioapic_route(STORM_PIN, STORM_VECTOR, 1, (u8)bsp_id, 0);
  testdev_set_irq(STORM_PIN, 1);
  delay_us(STORM_MS * 1000);
  u64 flags = interrupts_off();
  u32 storm = deliveries[STORM_VECTOR];
  testdev_set_irq(STORM_PIN, 0);
  u32 ended = lapic_eoi_all();
  interrupts_restore(flags);
  printf("a level line high for %u ms whose handler never EOIs: %u deliveries, %u EOIs to end them\n", STORM_MS, storm, ended);
  CHECK(7, eoi_at_delivery ? storm >= 1 : storm == 1, "%s", eoi_at_delivery ? "the host's local APIC ended each at delivery: a storm the guest outlasted" : "remote IRR and ISR hold it to one delivery");
  ioapic_set_masked(STORM_PIN, 1);

  /* Self-IPIs of rising priority nobody EOIs, then a lower one. */
  handler_eois = 0;
  u32 nested = 0;
  for (u32 vector = FIRST_NESTED_VECTOR; vector <= LAST_NESTED_VECTOR; vector += NESTED_STEP) {
    send(0, ICR_FIXED | ICR_SELF | vector);
    nested += WAIT_FOR(deliveries[vector] == 1, DELIVERY_TIMEOUT_US);
  }
  send(0, ICR_FIXED | ICR_SELF | HELD_VECTOR);
  delay_us(QUIET_US);
  u32 held_early = deliveries[HELD_VECTOR];
  ended = lapic_eoi_all();
  handler_eois = 1;
  int held_delivered = WAIT_FOR(deliveries[HELD_VECTOR] == 1, DELIVERY_TIMEOUT_US);
  if (!held_delivered) ended += lapic_eoi_all();
  printf("%u self-IPIs of rising priority without EOI all taken (%u); vector 0x%x below them %s; %u EOIs ended them\n", (LAST_NESTED_VECTOR - FIRST_NESTED_VECTOR) / NESTED_STEP + 1, nested, HELD_VECTOR, held_early ? "taken at once" : "waited", ended);
  CHECK(8, nested == (LAST_NESTED_VECTOR - FIRST_NESTED_VECTOR) / NESTED_STEP + 1 && held_delivered, "each higher vector nested; the lower one came once the EOIs were written");
  CHECK(9, eoi_at_delivery || held_early == 0, "with the SDM's local APIC the lower vector waited for the EOIs (PPR)");

  /* A storm of edges. */
  for (u32 edge = 0; edge < EDGE_STORM; edge++) {
    testdev_set_irq(EDGE_PIN, 1);
    testdev_set_irq(EDGE_PIN, 0);
  }
  delay_us(QUIET_US);
  CHECK(10, deliveries[EDGE_VECTOR] == 1 + EDGE_STORM, "%u edges in a row on pin %u: each taken before the next (%u)", EDGE_STORM, EDGE_PIN, deliveries[EDGE_VECTOR] - 1);
  CHECK(11, deliveries[SPURIOUS_VECTOR] == 0 && lapic_eoi_all() == 0, "no spurious interrupt, nothing left in service");
  cli();
  printf("misbehave: survived, exiting with 0x%x\n", MISBEHAVE_SURVIVED);
  debug_exit(MISBEHAVE_SURVIVED);
}
