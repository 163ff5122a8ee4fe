/* ipi: every application processor brought up by INIT-SIPI-SIPI (lib/smp.h), then IPIs between
 * the CPUs (SDM vol. 3 §11.6; x86-controllers.md §3.4, §3.8-3.10), xAPIC, flat logical model. Run
 * it with two or more vCPUs (fw_cfg says how many).
 *
 * It checks: every AP checks in, each with its own APIC ID, and each starts exactly once (the
 * second SIPI is ignored); a fixed IPI reaches exactly its destination, by physical APIC ID and by
 * logical (flat) destination; a logical multicast reaches each AP of the set once; the shorthands
 * self, all-including-self and all-excluding-self, and the physical broadcast 0xff, reach exactly
 * whom they name; a lowest-priority IPI to a set of APs is taken by exactly one of them each time;
 * and an AP answers an IPI with an IPI of its own to the BSP. Every count is exact and checked
 * after a quiet time, so a duplicate delivery fails as surely as a lost one. */
#include "lib/irqtest.h"
#include "lib/smp.h"
#include "lib/timing.h"

enum ipi_kind {
  IPI_PHYSICAL,
  IPI_LOGICAL,
  IPI_MULTICAST,
  IPI_SELF,
  IPI_ALL,
  IPI_ALL_BUT_SELF,
  IPI_BROADCAST,
  IPI_LOWEST_PRIORITY,
  IPI_REPLY_REQUEST,
  IPI_REPLY,
  IPI_KINDS
};
#define VECTOR_BASE 0x50 /* kind k uses vector 0x50 + k */
#define LOWEST_PRIORITY_IPIS 8
#define FLAT_LOGICAL_CPUS 8 /* the flat model's 8 destination bits: one per CPU */
#define LDR_SHIFT 24
#define DELIVERY_TIMEOUT_US 500000
#define QUIET_US 20000

static u32 cpu_count;
static volatile u32 received[SMP_MAX_CPUS][IPI_KINDS];
static volatile u32 ap_ready[SMP_MAX_CPUS];

static u32 this_cpu(void) {
  u32 id = lapic_id();
  for (u32 cpu = 0; cpu < cpu_count; cpu++)
    if (smp_apic_id(cpu) == id) return cpu;
  return SMP_MAX_CPUS; /* an APIC ID nobody checked in with */
}

static void send(u32 destination, u32 command, enum ipi_kind kind) { lapic_send_ipi(destination, command | ICR_ASSERT | (VECTOR_BASE + kind)); }

void guest_interrupt(u64 vector, u64 error_code) {
  if (vector < VECTOR_BASE || vector >= VECTOR_BASE + IPI_KINDS) {
    if (vector < PIC_MASTER_VECTOR_BASE) unexpected_exception(vector, error_code);
    unexpected_vector(vector);
  }
  enum ipi_kind kind = (enum ipi_kind)(vector - VECTOR_BASE);
  u32 cpu = this_cpu();
  if (cpu >= SMP_MAX_CPUS) unexpected_vector(vector);
  received[cpu][kind]++;
  if (kind == IPI_REPLY_REQUEST) send(smp_apic_id(0), ICR_FIXED, IPI_REPLY);
  lapic_eoi();
}

static void set_flat_logical_id(u32 cpu) {
  lapic_write(LAPIC_DFR, DFR_FLAT);
  lapic_write(LAPIC_LDR, cpu < FLAT_LOGICAL_CPUS ? (1u << cpu) << LDR_SHIFT : 0);
}

static void ap_main(u32 cpu) {
  set_flat_logical_id(cpu);
  ap_ready[cpu] = 1;
  for (;;) sti_hlt();
}

static u32 total(enum ipi_kind kind, u32 first_cpu) {
  u32 sum = 0;
  for (u32 cpu = first_cpu; cpu < cpu_count; cpu++) sum += received[cpu][kind];
  return sum;
}

/* After a quiet time: exactly `expected_bsp` deliveries on the BSP and `expected_ap` on each AP. */
static int exactly(enum ipi_kind kind, u32 expected_bsp, u32 expected_ap) {
  delay_us(QUIET_US);
  if (received[0][kind] != expected_bsp) return 0;
  for (u32 cpu = 1; cpu < cpu_count; cpu++)
    if (received[cpu][kind] != expected_ap) return 0;
  return 1;
}

static int all_ready(void) {
  for (u32 cpu = 1; cpu < cpu_count; cpu++)
    if (!ap_ready[cpu]) return 0;
  return 1;
}

static u32 logical_aps_mask(void) {
  u32 mask = 0;
  for (u32 cpu = 1; cpu < cpu_count && cpu < FLAT_LOGICAL_CPUS; cpu++) mask |= 1u << cpu;
  return mask;
}

int main(void) {
  serial_init();
  idt_install();
  printf("ipi: INIT/SIPI bring-up of every AP, then fixed, logical, shorthand, broadcast, lowest-priority IPIs and replies\n");
  CHECK(1, timing_init() == 0, "the TSC calibrates against PIT counter 2 (%lu ticks/ms)", tsc_per_ms());
  cpu_count = fw_cfg_cpu_count();
  CHECK(2, cpu_count >= 2 && cpu_count <= FLAT_LOGICAL_CPUS, "fw_cfg says %u CPUs (this guest wants 2 to %u)", cpu_count, FLAT_LOGICAL_CPUS);
  lapic_enable(0);
  set_flat_logical_id(0);

  u64 start = rdtsc();
  u32 missing = smp_start_all(cpu_count, ap_main);
  CHECK(3, missing == 0, "INIT, SIPI, SIPI: %u of %u APs checked in (after %lu ms)", smp_aps_online(), cpu_count - 1, tsc_to_us(rdtsc() - start) / 1000);
  u32 bsp_id = smp_apic_id(0);
  printf("BSP: APIC ID %u\n", bsp_id);
  for (u32 cpu = 1; cpu < cpu_count; cpu++) {
    u32 id = smp_apic_id(cpu);
    int unique = id != bsp_id;
    for (u32 other = 1; other < cpu; other++) unique = unique && smp_apic_id(other) != id;
    CHECK(4, unique && id < XAPIC_BROADCAST, "AP %u: APIC ID %u, its own", cpu, id);
  }
  CHECK(5, WAIT_FOR(all_ready(), DELIVERY_TIMEOUT_US), "every AP set its logical ID and waits with interrupts on");
  delay_us(QUIET_US);
  CHECK(6, smp_trampoline_arrivals() == cpu_count - 1, "each AP started exactly once: %u arrivals at the trampoline (the second SIPI was ignored)", smp_trampoline_arrivals());
  sti();

  for (u32 cpu = 1; cpu < cpu_count; cpu++) {
    send(smp_apic_id(cpu), ICR_FIXED, IPI_PHYSICAL);
    (void)WAIT_FOR(received[cpu][IPI_PHYSICAL] == 1, DELIVERY_TIMEOUT_US);
  }
  CHECK(7, exactly(IPI_PHYSICAL, 0, 1), "a fixed IPI to each AP's physical APIC ID reaches that AP alone");
  for (u32 cpu = 1; cpu < cpu_count; cpu++) {
    send(1u << cpu, ICR_FIXED | ICR_LOGICAL, IPI_LOGICAL);
    (void)WAIT_FOR(received[cpu][IPI_LOGICAL] == 1, DELIVERY_TIMEOUT_US);
  }
  CHECK(8, exactly(IPI_LOGICAL, 0, 1), "a fixed IPI to each AP's flat logical ID reaches that AP alone");
  send(logical_aps_mask(), ICR_FIXED | ICR_LOGICAL, IPI_MULTICAST);
  (void)WAIT_FOR(total(IPI_MULTICAST, 1) == cpu_count - 1, DELIVERY_TIMEOUT_US);
  CHECK(9, exactly(IPI_MULTICAST, 0, 1), "a logical multicast to every AP (0x%x) reaches each AP once", logical_aps_mask());

  send(0, ICR_FIXED | ICR_SELF, IPI_SELF);
  (void)WAIT_FOR(received[0][IPI_SELF] == 1, DELIVERY_TIMEOUT_US);
  CHECK(10, exactly(IPI_SELF, 1, 0), "shorthand self: the BSP alone");
  send(0, ICR_FIXED | ICR_ALL_INCLUDING_SELF, IPI_ALL);
  (void)WAIT_FOR(total(IPI_ALL, 0) == cpu_count, DELIVERY_TIMEOUT_US);
  CHECK(11, exactly(IPI_ALL, 1, 1), "shorthand all-including-self: every CPU once");
  send(0, ICR_FIXED | ICR_ALL_EXCLUDING_SELF, IPI_ALL_BUT_SELF);
  (void)WAIT_FOR(total(IPI_ALL_BUT_SELF, 1) == cpu_count - 1, DELIVERY_TIMEOUT_US);
  CHECK(12, exactly(IPI_ALL_BUT_SELF, 0, 1), "shorthand all-excluding-self: every AP once, not the BSP");
  send(XAPIC_BROADCAST, ICR_FIXED, IPI_BROADCAST);
  (void)WAIT_FOR(total(IPI_BROADCAST, 0) == cpu_count, DELIVERY_TIMEOUT_US);
  CHECK(13, exactly(IPI_BROADCAST, 1, 1), "physical destination 0xff (broadcast): every CPU once");

  for (u32 sent = 1; sent <= LOWEST_PRIORITY_IPIS; sent++) {
    send(logical_aps_mask(), ICR_LOWEST_PRIORITY | ICR_LOGICAL, IPI_LOWEST_PRIORITY);
    (void)WAIT_FOR(total(IPI_LOWEST_PRIORITY, 1) == sent, DELIVERY_TIMEOUT_US);
  }
  delay_us(QUIET_US);
  printf("lowest priority to the APs:");
  for (u32 cpu = 1; cpu < cpu_count; cpu++) printf(" AP %u took %u", cpu, received[cpu][IPI_LOWEST_PRIORITY]);
  printf("\n");
  CHECK(14, total(IPI_LOWEST_PRIORITY, 1) == LOWEST_PRIORITY_IPIS && received[0][IPI_LOWEST_PRIORITY] == 0, "%u lowest-priority IPIs to the set of APs: each taken by exactly one AP of the set (%u in all)", LOWEST_PRIORITY_IPIS, total(IPI_LOWEST_PRIORITY, 0));

  /* One AP at a time: replies of one vector arriving together may merge in the BSP's IRR (one bit
   * per vector, SDM 11.8.4), which is the hardware's rule, not a lost interrupt. */
  for (u32 cpu = 1; cpu < cpu_count; cpu++) {
    send(smp_apic_id(cpu), ICR_FIXED, IPI_REPLY_REQUEST);
    (void)WAIT_FOR(received[0][IPI_REPLY] == cpu, DELIVERY_TIMEOUT_US);
  }
  CHECK(15, exactly(IPI_REPLY_REQUEST, 0, 1) && received[0][IPI_REPLY] == cpu_count - 1, "each AP answers an IPI with an IPI to the BSP (%u replies)", received[0][IPI_REPLY]);
  CHECK(16, smp_trampoline_arrivals() == cpu_count - 1, "and no AP started again meanwhile");
  cli();
  all_checks_passed("ipi");
}
