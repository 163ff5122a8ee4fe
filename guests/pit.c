/* pit: the 8254 PIT's guest (Intel 8254 datasheet; src/vmm/devices/pit-8254.ts, and KVM's PIT on
 * the kernel chip, src/kvm/kvm-pit.ts). One CPU; IRQ 0 reaches it through the 8259A (LINT0 as a
 * virtual wire) or the IOAPIC's pin 0, edge-triggered.
 *
 * In order it: calibrates like Linux's pit_calibrate_tsc (channel 2, GATE high through port 0x61
 * bit 0, mode 0, polling OUT2 in bit 5); loads channel 2 in mode 0 with GATE low and latches its
 * count twice, far apart (the datasheet holds it; KVM's PIT does not); programs channel 0 as a rate
 * generator or square wave and counts IRQ 0 interrupts with interrupts on; reads channel 0's
 * status three times and latches its count; then (mode 2 only) keeps interrupts off for some
 * periods, watching the count wrap, and counts the interrupts taken in the periods after STI:
 * edges that came while interrupts were off coalesce into one (8259A IRR, IOAPIC/LAPIC IRR),
 * unless the PIT re-injects them (KVM's default).
 *
 * The VMM may write a configuration block (src/vmm/devices/pit-guest.ts); without one the guest
 * runs its defaults. Results go to a block in RAM for the harness and to the serial port. Checks
 * that hold on every chip stop the run with their number (isa-debug-exit); the rest is reported. */
#include "lib/irqtest.h"

#define CONFIG_ADDRESS 0x8000
#define RESULTS_ADDRESS 0x8100
#define CONFIG_MAGIC 0x38544950 /* "PIT8" */
#define ROUTE_PIC 0
#define ROUTE_IOAPIC 1
#define PIT_IOAPIC_VECTOR 0x30
#define PIT_PIC_VECTOR (PIC_MASTER_VECTOR_BASE + 0)
#define IRQ0_BIT 0x0001
#define FIRST_EXTERNAL_VECTOR 0x20 /* vectors below are exceptions */

/* 8254 (datasheet "Control Word Format", "Read-Back Command", "Status Byte"). */
#define PIT_CHANNEL_PORT(n) (PORT_PIT + (n))
#define PIT_CONTROL (PORT_PIT + 3)
#define CONTROL_SELECT(n) ((u8)((n) << 6))
#define CONTROL_LSB_THEN_MSB (3u << 4)
#define CONTROL_MODE(m) ((m) << 1)
#define CONTROL_PROGRAMMED_BITS 0x3f
#define READ_BACK_STATUS_ONLY 0xe0 /* 11, COUNT# = 1 (no count), STATUS# = 0 */
#define READ_BACK_CHANNEL(n) (2u << (n))
#define STATUS_OUTPUT 0x80
#define STATUS_NULL_COUNT 0x40
#define PORT_B_GATE2 0x01
#define PORT_B_SPEAKER 0x02
#define PORT_B_OUT2 0x20
#define RATE_GENERATOR 2
#define SQUARE_WAVE 3
#define TERMINAL_COUNT 0
#define MAX_COUNT 0xffff
#define STATUS_READS 3
#define MAX_POLLS 50000000u
/* Reads of channel 0 that saw the same count: a counting PIT moves by at least a pulse (838 ns)
 * between two reads, each of which takes microseconds. */
#define STUCK_POLLS 100000u
/* Linux's io_delay port: nothing answers it, so every write is a trip to the VMM (microseconds),
 * a delay that needs no clock. */
#define IO_DELAY_PORT 0x80
#define GATE_LOW_DELAY_WRITES 64

struct pit_config {
  u32 magic;
  u32 route;             /* ROUTE_PIC or ROUTE_IOAPIC */
  u32 mode;              /* channel 0: RATE_GENERATOR or SQUARE_WAVE */
  u32 count;             /* channel 0's initial count */
  u32 ticks;             /* IRQ 0 interrupts to count with interrupts on */
  u32 blackout_periods;  /* periods with interrupts off (mode 2; 0: skip) */
  u32 after_periods;     /* periods watched after STI */
  u32 calibration_count; /* channel 2's count for the calibration */
};

struct pit_results {
  u32 ticks;                 /* IRQ 0 interrupts taken with interrupts on */
  u32 status[STATUS_READS];  /* channel 0's status byte, read three times */
  u32 latched_count;         /* channel 0's count (counter latch command) */
  u32 calibration_polls;     /* reads of port 0x61 that saw bit 5 low (MAX_POLLS: it never rose) */
  u32 gate_low_first;        /* channel 2, mode 0, GATE low: the count latched twice, far apart */
  u32 gate_low_second;
  u32 blackout_periods;      /* count wraps seen with interrupts off */
  u32 after_ticks;           /* interrupts taken during the periods after STI */
  u32 done;                  /* 1 once every result is written */
};

static const struct pit_config defaults = {CONFIG_MAGIC, ROUTE_PIC, RATE_GENERATOR, 1193, 20, 20, 5, 2386};
static struct pit_results *const results = (struct pit_results *)RESULTS_ADDRESS;
static volatile u32 pit_ticks;
static u32 pit_vector;

void guest_interrupt(u64 vector, u64 error_code) {
  if (vector < FIRST_EXTERNAL_VECTOR) unexpected_exception(vector, error_code);
  if (vector == SPURIOUS_VECTOR) return; /* a spurious interrupt takes no EOI (SDM §11.9) */
  if (vector != pit_vector) unexpected_vector(vector);
  pit_ticks++;
  report_interrupt(vector);
  if (vector == PIT_PIC_VECTOR) pic_eoi(0);
  else lapic_eoi();
}

static void io_delay(u32 writes) {
  for (u32 write = 0; write < writes; write++) outb(IO_DELAY_PORT, 0);
}

/* The counter latch command, then LSB and MSB (the channel uses LSB-then-MSB access). */
static u32 latched_count(u32 channel) {
  outb(PIT_CONTROL, CONTROL_SELECT(channel));
  u32 low = inb(PIT_CHANNEL_PORT(channel));
  return low | ((u32)inb(PIT_CHANNEL_PORT(channel)) << 8);
}

static void program(u32 channel, u32 mode, u32 count) {
  outb(PIT_CONTROL, CONTROL_SELECT(channel) | CONTROL_LSB_THEN_MSB | CONTROL_MODE(mode));
  outb(PIT_CHANNEL_PORT(channel), (u8)count);
  outb(PIT_CHANNEL_PORT(channel), (u8)(count >> 8));
}

/* Channel 0 counts down and reloads: a read above the previous one means a reload passed (once per
 * period in mode 2, twice in mode 3). Waits until `wraps` reloads, until `*stop_at` reaches
 * `stop_value`, or until the count stops moving (no PIT answers: the run fails its checks instead
 * of hanging). Returns the reloads seen. */
static u32 wait_for_reloads(u32 wraps, const volatile u32 *stop_at, u32 stop_value) {
  u32 seen = 0;
  u32 unchanged = 0;
  u32 previous = latched_count(0);
  while (seen < wraps && (stop_at == 0 || *stop_at < stop_value) && unchanged < STUCK_POLLS) {
    u32 count = latched_count(0);
    if (count > previous) seen++;
    unchanged = count == previous ? unchanged + 1 : 0;
    previous = count;
  }
  return seen;
}

/* Linux's pit_calibrate_tsc: GATE high and the speaker off, channel 2 in mode 0, poll OUT2. */
static void calibrate(u32 count) {
  outb(PORT_SYSTEM_CONTROL_B, (u8)((inb(PORT_SYSTEM_CONTROL_B) & ~PORT_B_SPEAKER) | PORT_B_GATE2));
  program(2, TERMINAL_COUNT, count);
  u32 polls = 0;
  while (!(inb(PORT_SYSTEM_CONTROL_B) & PORT_B_OUT2) && polls < MAX_POLLS) polls++;
  results->calibration_polls = polls;
}

/* Mode 0 with GATE low: "GATE = 0 disables counting" (datasheet); the count is loaded anyway. */
static void probe_gate_low(void) {
  outb(PORT_SYSTEM_CONTROL_B, (u8)(inb(PORT_SYSTEM_CONTROL_B) & ~(PORT_B_GATE2 | PORT_B_SPEAKER)));
  program(2, TERMINAL_COUNT, MAX_COUNT);
  io_delay(GATE_LOW_DELAY_WRITES);
  results->gate_low_first = latched_count(2);
  io_delay(GATE_LOW_DELAY_WRITES);
  results->gate_low_second = latched_count(2);
}

int main(void) {
  const volatile struct pit_config *given = (const volatile struct pit_config *)CONFIG_ADDRESS;
  struct pit_config config = given->magic == CONFIG_MAGIC ? *(const struct pit_config *)given : defaults;
  serial_init();
  idt_install();
  lapic_enable(0);
  pic_init(PIC_MASTER_VECTOR_BASE, PIC_SLAVE_VECTOR_BASE);
  if (config.route == ROUTE_PIC) {
    pit_vector = PIT_PIC_VECTOR;
    lapic_write(LAPIC_REG_LINT0, LVT_EXTINT);
    pic_set_mask((u16)~IRQ0_BIT);
  } else {
    pit_vector = PIT_IOAPIC_VECTOR;
    lapic_write(LAPIC_REG_LINT0, LVT_MASKED);
    ioapic_route(GSI_PIT, PIT_IOAPIC_VECTOR, 0, 0, 0);
  }
  outb(PORT_READY, 1);
  printf("pit: mode %u, count %u, IRQ 0 through the %s\n", config.mode, config.count, config.route == ROUTE_PIC ? "8259A" : "IOAPIC");

  /* Whether OUT2 still reads low at the first poll depends on how long the write took: not checked. */
  calibrate(config.calibration_count);
  CHECK(1, results->calibration_polls < MAX_POLLS, "OUT2 rose at the terminal count after %u polls of port 0x61", results->calibration_polls);
  probe_gate_low();
  printf("  channel 2, mode 0, GATE low: count 0x%x, later 0x%x (%s)\n", results->gate_low_first, results->gate_low_second,
         results->gate_low_first == results->gate_low_second ? "held, as the datasheet says" : "counting");

  program(0, config.mode, config.count);
  sti();
  /* Bounded by the PIT itself: ten periods per tick wanted (a reload per period or half). */
  wait_for_reloads(config.ticks * 10 + 10, &pit_ticks, config.ticks);
  cli();
  results->ticks = pit_ticks;
  CHECK(2, results->ticks >= config.ticks, "%u IRQ 0 interrupts taken", results->ticks);

  for (u32 read = 0; read < STATUS_READS; read++) {
    outb(PIT_CONTROL, READ_BACK_STATUS_ONLY | READ_BACK_CHANNEL(0));
    results->status[read] = inb(PIT_CHANNEL_PORT(0));
    io_delay(1);
  }
  u32 programmed = CONTROL_LSB_THEN_MSB | CONTROL_MODE(config.mode);
  CHECK(3, (results->status[0] & CONTROL_PROGRAMMED_BITS) == programmed, "status 0x%x repeats the control word's bits 0x%x", results->status[0], programmed);
  CHECK(4, !(results->status[0] & STATUS_NULL_COUNT), "the count is loaded (NULL COUNT clear)");
  printf("  status OUT bits: %u %u %u\n", results->status[0] >> 7, results->status[1] >> 7, results->status[2] >> 7);
  results->latched_count = latched_count(0);
  CHECK(5, results->latched_count >= 1 && results->latched_count <= config.count, "latched count %u within 1..%u", results->latched_count, config.count);

  if (config.blackout_periods != 0 && config.mode == RATE_GENERATOR) {
    results->blackout_periods = wait_for_reloads(config.blackout_periods, 0, 0);
    u32 before = pit_ticks;
    sti();
    wait_for_reloads(config.after_periods, 0, 0);
    cli();
    results->after_ticks = pit_ticks - before;
    printf("  %u periods with interrupts off, then %u interrupts in the %u periods after STI\n", results->blackout_periods, results->after_ticks,
           config.after_periods);
  }
  results->done = 1;
  all_checks_passed("pit");
}
