/* x2apic: the local APIC in x2APIC mode (SDM vol. 3 §11.12; x86-controllers.md §3.11), every
 * register through MSRs 0x800-0x8ff. Run it with two vCPUs (or more): the APs are started in
 * x2APIC mode too (lib/smp.h: INIT and SIPI through the 64-bit ICR MSR).
 *
 * It checks: CPUID.1:ECX[21] offers x2APIC; IA32_APIC_BASE.EXTD enables it; the x2APIC ID (MSR
 * 0x802) is the initial APIC ID the xAPIC showed, and CPUID leaf 0xB's; the LDR (MSR 0x80d) is
 * derived from it (cluster in bits 31:16, one bit of 16 in 15:0); a SELF IPI (MSR 0x83f) arrives
 * once and its EOI through MSR 0x80b ends it; the timer runs through MSRs (LVT 0x832, divide 0x83e,
 * initial count 0x838, current count 0x839 running down to 0); every AP checks in with its own
 * x2APIC ID; IPIs with 32-bit destinations reach exactly their target: physical (the AP's x2APIC
 * ID), logical (the AP's cluster and bit), the broadcast 0xffffffff (every CPU), and a physical ID
 * no APIC has (nobody); and an AP answers through its own ICR MSR. */
#include "lib/irqtest.h"
#include "lib/smp.h"
#include "lib/timing.h"

enum x2apic_vector {
  VECTOR_SELF = 0x60,
  VECTOR_TIMER,
  VECTOR_PHYSICAL,
  VECTOR_LOGICAL,
  VECTOR_BROADCAST,
  VECTOR_ABSENT,
  VECTOR_REPLY_REQUEST,
  VECTOR_REPLY,
  VECTOR_END
};
#define VECTORS (VECTOR_END - VECTOR_SELF)
#define X2APIC_MSR(register_number) (0x800 + (register_number))
#define CPUID_1_ECX_X2APIC (1u << 21)
#define CPUID_TOPOLOGY_LEAF 0xb
#define TDCR_DIVIDE_BY_1 0xb
#define TIMER_COUNT 2000000u
#define ABSENT_X2APIC_ID 0x00010005u /* cluster 1: no vCPU of ours has it */
#define DELIVERY_TIMEOUT_US 500000
#define QUIET_US 20000

static u32 cpu_count;
static volatile u32 received[SMP_MAX_CPUS][VECTORS];
static volatile u32 ap_logical_id[SMP_MAX_CPUS];
static volatile u32 ap_ready[SMP_MAX_CPUS];

static u32 this_cpu(void) {
  u32 id = (u32)rdmsr(X2APIC_MSR(LAPIC_ID));
  for (u32 cpu = 0; cpu < cpu_count; cpu++)
    if (smp_apic_id(cpu) == id) return cpu;
  return SMP_MAX_CPUS;
}

/* ICR (MSR 0x830): one 64-bit write, the destination in bits 63:32 (SDM §11.12.9). */
static void send(u32 destination, u32 command, u32 vector) { wrmsr(X2APIC_MSR(LAPIC_REG_ICR), ((u64)destination << 32) | command | ICR_ASSERT | vector); }

void guest_interrupt(u64 vector, u64 error_code) {
  if (vector < VECTOR_SELF || vector >= VECTOR_END) {
    if (vector < PIC_MASTER_VECTOR_BASE) unexpected_exception(vector, error_code);
    unexpected_vector(vector);
  }
  u32 cpu = this_cpu();
  if (cpu >= SMP_MAX_CPUS) unexpected_vector(vector);
  received[cpu][vector - VECTOR_SELF]++;
  if (vector == VECTOR_REPLY_REQUEST) send(smp_apic_id(0), ICR_FIXED, VECTOR_REPLY);
  wrmsr(X2APIC_MSR(LAPIC_REG_EOI), 0);
}

static void ap_main(u32 cpu) {
  ap_logical_id[cpu] = (u32)rdmsr(X2APIC_MSR(LAPIC_LDR));
  ap_ready[cpu] = 1;
  for (;;) sti_hlt();
}

static u32 derived_logical_id(u32 x2apic_id) { return ((x2apic_id >> 4) << 16) | (1u << (x2apic_id & 0xf)); }

static u32 count(u32 cpu, enum x2apic_vector vector) { return received[cpu][vector - VECTOR_SELF]; }

/* After a quiet time: exactly `expected_bsp` on the BSP and `expected_ap` on each AP. */
static int exactly(enum x2apic_vector vector, u32 expected_bsp, u32 expected_ap) {
  delay_us(QUIET_US);
  if (count(0, vector) != expected_bsp) return 0;
  for (u32 cpu = 1; cpu < cpu_count; cpu++)
    if (count(cpu, vector) != expected_ap) return 0;
  return 1;
}

static int all_ready(void) {
  for (u32 cpu = 1; cpu < cpu_count; cpu++)
    if (!ap_ready[cpu]) return 0;
  return 1;
}

int main(void) {
  serial_init();
  idt_install();
  printf("x2apic: x2APIC mode through MSRs, SELF IPI, the timer, and IPIs with 32-bit destinations\n");
  CHECK(1, timing_init() == 0, "the TSC calibrates against PIT counter 2 (%lu ticks/ms)", tsc_per_ms());
  cpu_count = fw_cfg_cpu_count();
  CHECK(2, cpu_count >= 2 && cpu_count <= SMP_MAX_CPUS, "fw_cfg says %u CPUs (this guest wants 2 or more)", cpu_count);
  u32 eax, ebx, ecx, edx;
  cpuid(1, 0, &eax, &ebx, &ecx, &edx);
  CHECK(3, ecx & CPUID_1_ECX_X2APIC, "CPUID.1:ECX[21]: x2APIC is offered (ECX 0x%x)", ecx);
  u32 initial_id = ebx >> 24;
  lapic_enable(0);
  u32 xapic_id = lapic_id();
  lapic_enable(1);
  CHECK(4, (rdmsr(MSR_APIC_BASE) & (APIC_BASE_EN | APIC_BASE_EXTD)) == (APIC_BASE_EN | APIC_BASE_EXTD), "IA32_APIC_BASE has EN and EXTD (0x%lx)", rdmsr(MSR_APIC_BASE));
  u32 x2apic_id = (u32)rdmsr(X2APIC_MSR(LAPIC_ID));
  CHECK(5, x2apic_id == xapic_id && x2apic_id == initial_id, "the x2APIC ID (MSR 0x802) %u is the xAPIC ID %u and CPUID.1's initial APIC ID %u", x2apic_id, xapic_id, initial_id);
  cpuid(0, 0, &eax, &ebx, &ecx, &edx);
  if (eax >= CPUID_TOPOLOGY_LEAF) {
    cpuid(CPUID_TOPOLOGY_LEAF, 0, &eax, &ebx, &ecx, &edx);
    CHECK(6, edx == x2apic_id, "CPUID leaf 0xB gives the same x2APIC ID (%u)", edx);
  }
  u32 logical_id = (u32)rdmsr(X2APIC_MSR(LAPIC_LDR));
  CHECK(7, logical_id == derived_logical_id(x2apic_id), "the LDR (MSR 0x80d) 0x%x is derived from the ID", logical_id);
  sti();

  wrmsr(X2APIC_MSR(LAPIC_SELF_IPI), VECTOR_SELF);
  CHECK(8, WAIT_FOR(count(0, VECTOR_SELF) == 1, DELIVERY_TIMEOUT_US) && exactly(VECTOR_SELF, 1, 0), "a SELF IPI (MSR 0x83f) arrives once");
  CHECK(9, !lapic_in_service(VECTOR_SELF), "its EOI through MSR 0x80b ended it (ISR clear)");

  wrmsr(X2APIC_MSR(LAPIC_LVT_TIMER), VECTOR_TIMER | LVT_TIMER_ONE_SHOT);
  wrmsr(X2APIC_MSR(LAPIC_TIMER_DIVIDE), TDCR_DIVIDE_BY_1);
  wrmsr(X2APIC_MSR(LAPIC_TIMER_INITIAL), TIMER_COUNT);
  u32 current = (u32)rdmsr(X2APIC_MSR(LAPIC_TIMER_CURRENT));
  int fired = WAIT_FOR(count(0, VECTOR_TIMER) == 1, DELIVERY_TIMEOUT_US);
  CHECK(10, current > 0 && current < TIMER_COUNT, "the timer through MSRs: the current count (MSR 0x839) runs down (%u of %u)", current, TIMER_COUNT);
  CHECK(11, fired && exactly(VECTOR_TIMER, 1, 0) && rdmsr(X2APIC_MSR(LAPIC_TIMER_CURRENT)) == 0, "it fires once, and then reads 0");

  u32 missing = smp_start_all(cpu_count, ap_main);
  CHECK(12, missing == 0 && WAIT_FOR(all_ready(), DELIVERY_TIMEOUT_US), "INIT, SIPI, SIPI through the ICR MSR: %u of %u APs checked in", smp_aps_online(), cpu_count - 1);
  for (u32 cpu = 1; cpu < cpu_count; cpu++) {
    u32 id = smp_apic_id(cpu);
    int unique = id != x2apic_id;
    for (u32 other = 1; other < cpu; other++) unique = unique && smp_apic_id(other) != id;
    CHECK(13, unique && ap_logical_id[cpu] == derived_logical_id(id), "AP %u runs in x2APIC mode: x2APIC ID %u, its own; LDR 0x%x", cpu, id, ap_logical_id[cpu]);
  }
  delay_us(QUIET_US);
  CHECK(14, smp_trampoline_arrivals() == cpu_count - 1, "each AP started exactly once (%u arrivals)", smp_trampoline_arrivals());

  for (u32 cpu = 1; cpu < cpu_count; cpu++) {
    send(smp_apic_id(cpu), ICR_FIXED, VECTOR_PHYSICAL);
    (void)WAIT_FOR(count(cpu, VECTOR_PHYSICAL) == 1, DELIVERY_TIMEOUT_US);
  }
  CHECK(15, exactly(VECTOR_PHYSICAL, 0, 1), "a fixed IPI to each AP's 32-bit x2APIC ID reaches that AP alone");
  for (u32 cpu = 1; cpu < cpu_count; cpu++) {
    send(ap_logical_id[cpu], ICR_FIXED | ICR_LOGICAL, VECTOR_LOGICAL);
    (void)WAIT_FOR(count(cpu, VECTOR_LOGICAL) == 1, DELIVERY_TIMEOUT_US);
  }
  CHECK(16, exactly(VECTOR_LOGICAL, 0, 1), "a fixed IPI to each AP's logical ID (cluster and bit) reaches that AP alone");
  send(X2APIC_BROADCAST, ICR_FIXED, VECTOR_BROADCAST);
  CHECK(17, exactly(VECTOR_BROADCAST, 1, 1), "the physical broadcast 0xffffffff reaches every CPU once");
  send(ABSENT_X2APIC_ID, ICR_FIXED, VECTOR_ABSENT);
  CHECK(18, exactly(VECTOR_ABSENT, 0, 0), "an IPI to x2APIC ID 0x%x, which no APIC has, reaches nobody", ABSENT_X2APIC_ID);
  for (u32 cpu = 1; cpu < cpu_count; cpu++) {
    send(smp_apic_id(cpu), ICR_FIXED, VECTOR_REPLY_REQUEST);
    (void)WAIT_FOR(count(0, VECTOR_REPLY) == cpu, DELIVERY_TIMEOUT_US);
  }
  CHECK(19, exactly(VECTOR_REPLY_REQUEST, 0, 1) && count(0, VECTOR_REPLY) == cpu_count - 1, "each AP answers through its own ICR MSR (%u replies)", count(0, VECTOR_REPLY));
  cli();
  all_checks_passed("x2apic");
}
