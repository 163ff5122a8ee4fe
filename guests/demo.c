/* demo: the guest `npm start` boots (src/vmm/demo/kvm-demo.ts). Two CPUs and four interrupt
 * sources at once, each counted in the status block (lib/demo-status.h) the VMM samples live:
 *
 *   timer   vCPU 0's local APIC timer, periodic (SDM vol. 3 §11.5.4). Each tick's handler drives
 *           the three sources below.
 *   IPI     a fixed IPI from vCPU 0 to vCPU 1 (SDM §11.6.1), one per tick.
 *   level   the PCI test device's level work (src/vmm/devices/pci/pci-test-device.ts): a unit
 *           queued per tick (LEVEL_WORK); the device model on the VMM's device thread keeps INTA#
 *           asserted while work is outstanding and re-triggers at each resample; INTA# reaches
 *           vCPU 1 through the IOAPIC pin firmware wrote to Interrupt Line, level-triggered. The
 *           handler completes one unit per run (LEVEL_ACK) and EOIs, so N units are N runs.
 *   MSI-X   a second PCI test function raises MSI-X entry 0 (RAISE), one per tick, to vCPU 1.
 *
 * Two functions, because one function cannot do both: a function with MSI or MSI-X enabled may
 * not signal INTx (PCI Local Bus 3.0 §6.8.1.3; PCIe §7.7.2), and the test device keeps INTA# off
 * the chip while either is enabled.
 *
 * At most one IPI and one MSI-X message are in flight at a time: a tick whose previous one has not
 * reached its handler yet sends none and counts a skip. A fixed interrupt whose vector is still in
 * the receiver's IRR would merge with it (SDM §11.8.4), so this makes every count exact (and the
 * VMM checks that vCPU 1's local APIC merged nothing). Level work needs no such rule: units queue
 * in the device and each is one interrupt.
 *
 * The sources run for `duration_ms` (command line, fw_cfg; measured with the TSC), then vCPU 0
 * stops its timer, waits (bounded) until every request has been handled, and a quiet spell more
 * for anything extra, prints a summary on the serial port and exits through isa-debug-exit: 0 when
 * every source handled exactly what was requested, DEMO_EXIT_UNHANDLED otherwise, a CHECK code
 * when setting up failed. */
#include "lib/demo-status.h"
#include "lib/irqtest.h"
#include "lib/smp.h"
#include "lib/timing.h"

#define DEMO_CPUS 2
#define AP_CPU 1
#define AP_READY_TIMEOUT_US 1000000
#define DRAIN_TIMEOUT_US 2000000
#define QUIET_US 20000
/* Both local APICs count 1 ns per count at divide-by-1 (KVM's APIC_BUS_CYCLE_NS, and our
 * LocalApic's default apicBusCycleNs): 1000 counts per microsecond. */
#define TDCR_DIVIDE_BY_1 0xb
#define LAPIC_COUNTS_PER_US 1000
#define COMMAND_LINE_BYTES 256

/* PCI configuration mechanism #1 (PCI Local Bus 3.0 §3.2.2.3.2) and header type 0 (§6.2). */
#define CONFIG_ENABLE 0x80000000u
#define CONFIG_DEVICE_SHIFT 11
#define PCI_DEVICES 32
#define PCI_ID 0x00
#define PCI_COMMAND 0x04
#define PCI_BAR0 0x10
#define PCI_CAPABILITY_POINTER 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define COMMAND_MEMORY (1u << 1)
#define COMMAND_BUS_MASTER (1u << 2)
#define COMMAND_INTX_DISABLE (1u << 10)
#define BAR_ADDRESS_MASK 0xfffffff0u
#define MAX_CAPABILITIES 48 /* a longer list loops */
/* MSI-X (§6.8.2). */
#define CAP_MSIX 0x11
#define MSIX_CONTROL 2
#define MSIX_TABLE 4
#define MSIX_ENABLE (1u << 15)
#define MSIX_FUNCTION_MASK (1u << 14)
#define MSIX_BIR(location) ((location) & 7u)
#define MSIX_OFFSET(location) ((location) & ~7u)
#define MSIX_ENTRY_ADDRESS 0
#define MSIX_ENTRY_UPPER_ADDRESS 4
#define MSIX_ENTRY_DATA 8
#define MSIX_ENTRY_CONTROL 12
#define MSIX_ENTRY 0 /* the entry the demo raises: the table's first, at the table's start */
/* x86 MSI address (SDM §11.11.1): fixed, physical destination, edge. */
#define MSI_ADDRESS_BASE 0xfee00000u
#define MSI_DESTINATION_SHIFT 12
/* The test device (pci-test-device.ts): its IDs and BAR 0's registers. */
#define TEST_DEVICE_ID 0x10f01af4u
#define REG_RAISE 0x04
#define REG_LEVEL_WORK 0x0c
#define REG_LEVEL_ACK 0x10
#define TEST_FUNCTIONS 2 /* the first found does the level work, the second MSI-X */

static volatile u32 *const status = (volatile u32 *)DEMO_STATUS_ADDRESS;
static u64 level_registers; /* BAR 0 of the level function */
static u64 msix_registers;  /* BAR 0 of the MSI-X function */
static u32 ap_apic_id;
static volatile u32 ap_ready;

/* --- PCI configuration space ------------------------------------------------------------------ */

static void config_select(u32 device, u32 offset) { outl(PORT_PCI_CONFIG_ADDRESS, CONFIG_ENABLE | (device << CONFIG_DEVICE_SHIFT) | (offset & 0xfc)); }
static u32 config_read32(u32 device, u32 offset) {
  config_select(device, offset);
  return inl(PORT_PCI_CONFIG_DATA);
}
/* A byte or word is the DWORD's lane (address bits 1:0); the DWORD read never writes anything. */
static u32 config_read(u32 device, u32 offset, u32 bits) { return (config_read32(device, offset) >> ((offset & 3) * 8)) & ((1u << bits) - 1); }
/* A 16-bit write touches only its own lanes: Command's write must leave Status's RW1C bits alone. */
static void config_write16(u32 device, u32 offset, u16 value) {
  config_select(device, offset);
  outw((u16)(PORT_PCI_CONFIG_DATA + (offset & 2)), value);
}
static u64 bar_address(u32 device, u32 bar) { return config_read32(device, PCI_BAR0 + 4 * bar) & BAR_ADDRESS_MASK; }

/* Device numbers of the test functions on bus 0, in order; returns how many (at most `capacity`). */
static u32 find_test_functions(u32 *devices, u32 capacity) {
  u32 found = 0;
  for (u32 device = 0; device < PCI_DEVICES && found < capacity; device++)
    if (config_read32(device, PCI_ID) == TEST_DEVICE_ID) devices[found++] = device;
  return found;
}

static u32 find_capability(u32 device, u32 id) {
  u32 walked = 0;
  for (u32 at = config_read(device, PCI_CAPABILITY_POINTER, 8) & 0xfc; at != 0 && walked < MAX_CAPABILITIES; at = config_read(device, at + 1, 8) & 0xfc, walked++)
    if (config_read(device, at, 8) == id) return at;
  return 0;
}

/* The level function: memory decode on, INTx enabled, INTA#'s pin routed level-triggered to vCPU 1. */
static u32 set_up_level_function(u32 device) {
  level_registers = bar_address(device, 0);
  u32 gsi = config_read(device, PCI_INTERRUPT_LINE, 8);
  status[DEMO_WORD_LEVEL_GSI] = gsi;
  if (gsi >= IOAPIC_PINS) return gsi;
  ioapic_route((u8)gsi, DEMO_VECTOR_LEVEL, 1, (u8)ap_apic_id, 0);
  u16 command = (u16)config_read(device, PCI_COMMAND, 16);
  config_write16(device, PCI_COMMAND, (u16)((command | COMMAND_MEMORY) & ~COMMAND_INTX_DISABLE));
  return gsi;
}

/* The MSI-X function: entry 0 to vCPU 1 unmasked, MSI-X enabled, bus mastering on (an MSI is a
 * memory write). Returns the capability's offset, 0 if the function has none. */
static u32 set_up_msix_function(u32 device) {
  u32 capability = find_capability(device, CAP_MSIX);
  if (capability == 0) return 0;
  msix_registers = bar_address(device, 0);
  u32 location = config_read32(device, capability + MSIX_TABLE);
  u64 entry = bar_address(device, MSIX_BIR(location)) + MSIX_OFFSET(location) + MSIX_ENTRY * 16;
  mmio_write(entry + MSIX_ENTRY_ADDRESS, MSI_ADDRESS_BASE | (ap_apic_id << MSI_DESTINATION_SHIFT));
  mmio_write(entry + MSIX_ENTRY_UPPER_ADDRESS, 0);
  mmio_write(entry + MSIX_ENTRY_DATA, DEMO_VECTOR_MSIX);
  mmio_write(entry + MSIX_ENTRY_CONTROL, 0);
  u16 command = (u16)config_read(device, PCI_COMMAND, 16);
  config_write16(device, PCI_COMMAND, (u16)(command | COMMAND_MEMORY | COMMAND_BUS_MASTER));
  u16 control = (u16)config_read(device, capability + MSIX_CONTROL, 16);
  config_write16(device, capability + MSIX_CONTROL, (u16)((control | MSIX_ENABLE) & ~MSIX_FUNCTION_MASK));
  return capability;
}

/* --- the command line ------------------------------------------------------------------------- */

/* The decimal value of `name=` in `line` (a word of its own), or `fallback`; held to [low, high]. */
static u32 argument(const char *line, const char *name, u32 fallback, u32 low, u32 high) {
  u32 value = fallback;
  for (const char *word = line; *word != 0;) {
    const char *at = word, *expected = name;
    while (*expected != 0 && *at == *expected) at++, expected++;
    if (*expected == 0 && *at >= '0' && *at <= '9') {
      value = 0;
      while (*at >= '0' && *at <= '9' && value <= high) value = value * 10 + (u32)(*at++ - '0');
    }
    while (*word != 0 && *word != ' ') word++;
    while (*word == ' ') word++;
  }
  return value < low ? low : value > high ? high : value;
}

/* --- interrupts --------------------------------------------------------------------------------- */

/* vCPU 0, each tick: one unit of level work; an IPI and an MSI-X raise unless the previous one of
 * each has not been handled yet. Each request is counted before it is made, so a handler that runs
 * at once never counts ahead of it. */
static void on_timer(void) {
  if (status[DEMO_WORD_PHASE] != DEMO_PHASE_RUNNING) {
    status[DEMO_WORD_TIMER_LATE_TICKS]++;
    return;
  }
  status[DEMO_WORD_TIMER_TICKS]++;
  if (status[DEMO_WORD_IPIS_HANDLED] == status[DEMO_WORD_IPIS_SENT]) {
    status[DEMO_WORD_IPIS_SENT]++;
    lapic_send_ipi(ap_apic_id, ICR_FIXED | ICR_ASSERT | DEMO_VECTOR_IPI);
  } else {
    status[DEMO_WORD_IPIS_SKIPPED]++;
  }
  status[DEMO_WORD_LEVEL_QUEUED]++;
  mmio_write(level_registers + REG_LEVEL_WORK, 1);
  if (status[DEMO_WORD_MSIX_HANDLED] == status[DEMO_WORD_MSIX_RAISED]) {
    status[DEMO_WORD_MSIX_RAISED]++;
    mmio_write(msix_registers + REG_RAISE, MSIX_ENTRY);
  } else {
    status[DEMO_WORD_MSIX_SKIPPED]++;
  }
}

/* vCPU 1: a driver's level handler, one unit of work per run. */
static void on_level(void) {
  if (status[DEMO_WORD_LEVEL_HANDLED] + status[DEMO_WORD_LEVEL_IDLE] == 0) status[DEMO_WORD_EOI_AT_DELIVERY] = (u32)lapic_ended_at_delivery(DEMO_VECTOR_LEVEL);
  if (mmio_read(level_registers + REG_LEVEL_ACK) > 0) {
    mmio_write(level_registers + REG_LEVEL_ACK, 1);
    status[DEMO_WORD_LEVEL_HANDLED]++;
  } else {
    status[DEMO_WORD_LEVEL_IDLE]++;
  }
}

void guest_interrupt(u64 vector, u64 error_code) {
  switch (vector) {
    case DEMO_VECTOR_TIMER:
      on_timer();
      break;
    case DEMO_VECTOR_IPI:
      status[DEMO_WORD_IPIS_HANDLED]++;
      break;
    case DEMO_VECTOR_LEVEL:
      on_level();
      break;
    case DEMO_VECTOR_MSIX:
      status[DEMO_WORD_MSIX_HANDLED]++;
      break;
    case SPURIOUS_VECTOR:
      return; /* no EOI for the spurious vector (SDM §11.9) */
    default:
      if (vector < PIC_MASTER_VECTOR_BASE) unexpected_exception(vector, error_code);
      unexpected_vector(vector);
  }
  lapic_eoi();
}

static void ap_main(u32 cpu) {
  (void)cpu;
  ap_ready = 1;
  for (;;) sti_hlt();
}

/* --- the run ------------------------------------------------------------------------------------ */

static int all_handled(void) {
  return status[DEMO_WORD_IPIS_HANDLED] == status[DEMO_WORD_IPIS_SENT] && status[DEMO_WORD_MSIX_HANDLED] == status[DEMO_WORD_MSIX_RAISED] &&
         status[DEMO_WORD_LEVEL_HANDLED] == status[DEMO_WORD_LEVEL_QUEUED];
}

/* Runs the sources for `duration_ms`, then stops the timer; returns how long they ran, in µs. */
static u64 run_sources(u32 duration_ms, u32 period_us) {
  lapic_write(LAPIC_TIMER_DIVIDE, TDCR_DIVIDE_BY_1);
  lapic_write(LAPIC_LVT_TIMER, DEMO_VECTOR_TIMER | LVT_TIMER_PERIODIC);
  status[DEMO_WORD_PHASE] = DEMO_PHASE_RUNNING;
  u64 start = rdtsc();
  u64 end = start + us_to_tsc((u64)duration_ms * 1000);
  lapic_write(LAPIC_TIMER_INITIAL, period_us * LAPIC_COUNTS_PER_US);
  sti();
  while (!deadline_passed(end)) sti_hlt();
  /* With interrupts off, so that every tick the handler takes from here on is a late one. */
  cli();
  status[DEMO_WORD_PHASE] = DEMO_PHASE_DRAINING;
  lapic_write(LAPIC_LVT_TIMER, DEMO_VECTOR_TIMER | LVT_MASKED);
  lapic_write(LAPIC_TIMER_INITIAL, 0);
  u64 running_us = tsc_to_us(rdtsc() - start);
  sti();
  return running_us;
}

static u32 per_second(u32 count, u64 running_us) { return running_us == 0 ? 0 : (u32)((u64)count * 1000000 / running_us); }

int main(void) {
  for (u32 word = 0; word < DEMO_WORDS; word++) status[word] = 0;
  status[DEMO_WORD_VERSION] = DEMO_STATUS_VERSION;
  status[DEMO_WORD_MAGIC] = DEMO_STATUS_MAGIC;
  serial_init();
  idt_install();
  char command_line[COMMAND_LINE_BYTES];
  fw_cfg_command_line(command_line, sizeof command_line);
  u32 duration_ms = argument(command_line, "duration_ms=", DEMO_DEFAULT_DURATION_MS, 1, DEMO_MAX_DURATION_MS);
  u32 period_us = argument(command_line, "timer_us=", DEMO_DEFAULT_TIMER_PERIOD_US, DEMO_MIN_TIMER_PERIOD_US, DEMO_MAX_TIMER_PERIOD_US);
  status[DEMO_WORD_TIMER_PERIOD_US] = period_us;
  printf("demo: %u ms of a %u us LAPIC timer on vCPU 0, driving IPIs, PCI level work and MSI-X to vCPU 1\n", duration_ms, period_us);

  CHECK(1, timing_init() == 0, "the TSC calibrates against PIT counter 2 (%lu ticks/ms)", tsc_per_ms());
  CHECK(2, fw_cfg_cpu_count() == DEMO_CPUS, "fw_cfg says %u CPUs (the demo wants %u)", fw_cfg_cpu_count(), DEMO_CPUS);
  u32 functions[TEST_FUNCTIONS];
  u32 found = find_test_functions(functions, TEST_FUNCTIONS);
  CHECK(3, found == TEST_FUNCTIONS, "%u PCI test functions (1af4:10f0) on bus 0: one for level work, one for MSI-X (a function with MSI-X enabled may not use INTx)", found);
  /* No firmware ran: the 8259A is as at reset, every IRQ unmasked, and the BSP's LINT0 is its
   * virtual wire (ExtINT, as KVM's reset quirk LINT0_REENABLED leaves it), so the PIT, counting
   * from reset as QEMU's does, would interrupt vCPU 0. Mask it, as an OS does first. */
  pic_init(PIC_MASTER_VECTOR_BASE, PIC_SLAVE_VECTOR_BASE);
  lapic_enable(0);
  CHECK(4, smp_start_all(DEMO_CPUS, ap_main) == 0 && WAIT_FOR(ap_ready, AP_READY_TIMEOUT_US), "vCPU 1 started by INIT, SIPI, SIPI and waits for interrupts");
  ap_apic_id = smp_apic_id(AP_CPU);
  u32 gsi = set_up_level_function(functions[0]);
  CHECK(5, gsi < IOAPIC_PINS, "level work: device %u, INTA# on GSI %u, level-triggered to APIC %u", functions[0], gsi, ap_apic_id);
  u32 msix = set_up_msix_function(functions[1]);
  CHECK(6, msix != 0, "MSI-X: device %u, entry %u to APIC %u (capability at 0x%x)", functions[1], MSIX_ENTRY, ap_apic_id, msix);

  u64 running_us = run_sources(duration_ms, period_us);
  status[DEMO_WORD_RUNNING_US] = (u32)running_us;
  int drained = WAIT_FOR(all_handled(), DRAIN_TIMEOUT_US);
  delay_us(QUIET_US);
  int exact = drained && all_handled();
  /* A level run with no work is the host's local APIC ending the interrupt at delivery
   * (irqtest.h lapic_ended_at_delivery), never the SDM's. */
  int level_runs_exact = status[DEMO_WORD_LEVEL_IDLE] == 0 || status[DEMO_WORD_EOI_AT_DELIVERY];

  printf("demo: the sources ran %lu ms\n", running_us / 1000);
  printf("  timer: %u ticks (%u/s), %u after the stop\n", status[DEMO_WORD_TIMER_TICKS], per_second(status[DEMO_WORD_TIMER_TICKS], running_us), status[DEMO_WORD_TIMER_LATE_TICKS]);
  printf("  IPI:   %u sent, %u handled (%u/s), %u ticks skipped while one was in flight\n", status[DEMO_WORD_IPIS_SENT], status[DEMO_WORD_IPIS_HANDLED],
         per_second(status[DEMO_WORD_IPIS_HANDLED], running_us), status[DEMO_WORD_IPIS_SKIPPED]);
  printf("  level: %u units queued, %u handled (%u/s), %u runs with no work\n", status[DEMO_WORD_LEVEL_QUEUED], status[DEMO_WORD_LEVEL_HANDLED],
         per_second(status[DEMO_WORD_LEVEL_HANDLED], running_us), status[DEMO_WORD_LEVEL_IDLE]);
  printf("  MSI-X: %u raised, %u handled (%u/s), %u ticks skipped while one was in flight\n", status[DEMO_WORD_MSIX_RAISED], status[DEMO_WORD_MSIX_HANDLED],
         per_second(status[DEMO_WORD_MSIX_HANDLED], running_us), status[DEMO_WORD_MSIX_SKIPPED]);
  if (status[DEMO_WORD_EOI_AT_DELIVERY]) report_eoi_timing(1);
  status[DEMO_WORD_PHASE] = DEMO_PHASE_DONE;
  if (exact && level_runs_exact) {
    printf("demo: every interrupt asked for was handled, once\n");
    debug_exit(0);
  }
  printf("demo: FAIL: %s\n", exact ? "level handler runs with no work on an APIC that EOIs in the handler" : "a source's handled count differs from its requests after the drain");
  debug_exit(DEMO_EXIT_UNHANDLED);
}
