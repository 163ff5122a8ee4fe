/* lapic-timer: the local APIC timer in its three modes (SDM vol. 3 §11.5.4; x86-controllers.md
 * §3.13), one CPU, xAPIC registers, time measured with the TSC (calibrated against the PIT).
 *
 * It checks: the divide configuration reads back each of its eight encodings; one-shot counts
 * down from the initial count, fires once, and then reads 0; the timer's rate, measured with one-
 * shot runs, scales with the divider (/1 against /16 over the same time); periodic mode fires
 * repeatedly, never faster than its period, and stops when the initial count is zeroed;
 * TSC-deadline mode (CPUID.1:ECX[24], which the VMM must offer) fires once the TSC reaches the
 * deadline, not before, after which IA32_TSC_DEADLINE reads 0; a deadline already past fires, a
 * zeroed deadline disarms, and the initial-count register does nothing in that mode; a masked LVT
 * counts to 0 but delivers nothing, and with the SDM's local APIC not even at unmask (an expiry
 * while masked is not held). KVM's local APIC on this PVM host delivers that expiry at unmask: the
 * guest recognises that APIC by its EOI at delivery (irqtest.h) and prints what it saw instead.
 *
 * Durations are measured as the shortest of a few runs: a loaded host only lengthens a run, so
 * the shortest is the closest to the timer's own. Bounds are loose: they catch a wrong divider or
 * a timer that runs fast, not the host's latency. */
#include "lib/irqtest.h"
#include "lib/timing.h"

#define VECTOR_TIMER 0x40
#define VECTOR_DEADLINE 0x41
#define TDCR_DIVIDE_BY_1 0xb
#define TDCR_DIVIDE_BY_16 0x3
#define DIVIDER_RATIO 16
#define CPUID_1_ECX_TSC_DEADLINE (1u << 24)
#define RATE_COUNT 5000000u /* the first one-shot, to learn the timer's rate */
#define MEASURE_MS 10       /* each timed one-shot run */
#define RUNS 3
#define PERIOD_US 1000
#define PERIODIC_WINDOW_US 50000
#define EXPECTED_TICKS (PERIODIC_WINDOW_US / PERIOD_US)
#define MIN_PERIODIC_TICKS 5
#define DEADLINE_US 5000
#define FIRE_TIMEOUT_US 1000000
#define QUIET_US 20000

static const u32 divide_encodings[] = {0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xa, 0xb};

static volatile u32 timer_ticks;
static volatile u32 deadline_ticks;
static volatile u64 last_tick_tsc;
/* How the local APIC ends interrupts, as the first handler saw it (irqtest.h); -1 until then. */
static volatile int eoi_at_delivery = -1;

void guest_interrupt(u64 vector, u64 error_code) {
  if (eoi_at_delivery < 0 && vector >= PIC_MASTER_VECTOR_BASE) eoi_at_delivery = lapic_ended_at_delivery((u32)vector);
  if (vector == VECTOR_TIMER) timer_ticks++;
  else if (vector == VECTOR_DEADLINE) deadline_ticks++;
  else if (vector < PIC_MASTER_VECTOR_BASE) unexpected_exception(vector, error_code);
  else unexpected_vector(vector);
  last_tick_tsc = rdtsc();
  lapic_eoi();
}

/* One one-shot run of `count` at `divide`: how long (TSC ticks) until its interrupt, 0 if none. */
static u64 one_shot_ticks(u32 divide, u32 count) {
  lapic_write(LAPIC_LVT_TIMER, VECTOR_TIMER | LVT_TIMER_ONE_SHOT);
  lapic_write(LAPIC_TIMER_DIVIDE, divide);
  u32 before = timer_ticks;
  u64 start = rdtsc();
  lapic_write(LAPIC_TIMER_INITIAL, count);
  if (!WAIT_FOR(timer_ticks != before, FIRE_TIMEOUT_US)) return 0;
  return last_tick_tsc - start;
}

static u64 shortest_one_shot(u32 divide, u32 count) {
  u64 shortest = ~0ul;
  for (int run = 0; run < RUNS; run++) {
    u64 ticks = one_shot_ticks(divide, count);
    if (ticks == 0) return 0;
    if (ticks < shortest) shortest = ticks;
  }
  return shortest;
}

int main(void) {
  serial_init();
  idt_install();
  printf("lapic-timer: one-shot, periodic and TSC-deadline, the divider and the mask\n");
  CHECK(1, timing_init() == 0, "the TSC calibrates against PIT counter 2 (%lu ticks/ms)", tsc_per_ms());
  lapic_enable(0);
  sti();

  u32 bad_encoding = 0xffffffffu;
  for (u32 index = 0; index < sizeof divide_encodings / sizeof divide_encodings[0]; index++) {
    lapic_write(LAPIC_TIMER_DIVIDE, divide_encodings[index]);
    if (lapic_read(LAPIC_TIMER_DIVIDE) != divide_encodings[index]) bad_encoding = divide_encodings[index];
  }
  CHECK(2, bad_encoding == 0xffffffffu, "the divide configuration reads back each of its 8 encodings (0x%x did not)", bad_encoding);

  /* One-shot. */
  lapic_write(LAPIC_LVT_TIMER, VECTOR_TIMER | LVT_TIMER_ONE_SHOT);
  lapic_write(LAPIC_TIMER_DIVIDE, TDCR_DIVIDE_BY_1);
  u64 start = rdtsc();
  lapic_write(LAPIC_TIMER_INITIAL, RATE_COUNT);
  u32 first = lapic_read(LAPIC_TIMER_CURRENT);
  u32 second = lapic_read(LAPIC_TIMER_CURRENT);
  int fired = WAIT_FOR(timer_ticks == 1, FIRE_TIMEOUT_US);
  u64 rate_us = tsc_to_us(last_tick_tsc - start);
  /* Printed only now: printf holds interrupts off while it writes, which would delay the timer's. */
  CHECK(3, first <= RATE_COUNT && second < first, "one-shot: the current count runs down from %u (%u, then %u)", RATE_COUNT, first, second);
  CHECK(4, fired, "one-shot: it fires");
  report_eoi_timing(eoi_at_delivery);
  delay_us(QUIET_US);
  CHECK(5, timer_ticks == 1 && lapic_read(LAPIC_TIMER_CURRENT) == 0, "one-shot: once, and then the current count reads 0 (%u interrupts)", timer_ticks);
  CHECK(6, rate_us > 0, "%u counts at /1 took %lu us", RATE_COUNT, rate_us);

  /* The divider: /16 with a sixteenth of the count takes as long as /1 with the whole count. */
  u64 counts_per_ms = (u64)RATE_COUNT * 1000 / rate_us;
  u32 measure_count = (u32)(counts_per_ms * MEASURE_MS);
  u64 by_1 = shortest_one_shot(TDCR_DIVIDE_BY_1, measure_count);
  u64 by_16 = shortest_one_shot(TDCR_DIVIDE_BY_16, measure_count / DIVIDER_RATIO);
  printf("timer rate at /1: %lu counts/ms; %u counts at /1: %lu us; %u counts at /16: %lu us\n", counts_per_ms, measure_count, tsc_to_us(by_1), measure_count / DIVIDER_RATIO, tsc_to_us(by_16));
  CHECK(7, by_1 != 0 && by_16 != 0 && by_16 * 2 >= by_1 && by_16 <= by_1 * 2, "/16 counts 16 times slower than /1 (the same time, within a factor of 2)");

  /* Periodic, with the rate of the shortest of several one-shots: the first one-shot's time includes
   * any delay in delivering its interrupt (a busy host), which would make the period too short. */
  u64 by_1_us = tsc_to_us(by_1);
  if (by_1_us != 0) counts_per_ms = (u64)measure_count * 1000 / by_1_us;
  lapic_write(LAPIC_TIMER_DIVIDE, TDCR_DIVIDE_BY_1);
  lapic_write(LAPIC_LVT_TIMER, VECTOR_TIMER | LVT_TIMER_PERIODIC);
  /* KVM's local APIC keeps the mode bits only when the vCPU's CPUID was set (its timer mode mask
   * comes from CPUID): a VMM that sets none shows here. */
  CHECK(8, lapic_read(LAPIC_LVT_TIMER) == (VECTOR_TIMER | LVT_TIMER_PERIODIC), "periodic: the LVT timer reads back periodic mode (0x%x)", lapic_read(LAPIC_LVT_TIMER));
  u32 before = timer_ticks;
  lapic_write(LAPIC_TIMER_INITIAL, (u32)(counts_per_ms * PERIOD_US / 1000));
  delay_us(PERIODIC_WINDOW_US);
  u32 ticks = timer_ticks - before;
  lapic_write(LAPIC_TIMER_INITIAL, 0);
  delay_us(QUIET_US / 4);
  u32 after_stop = timer_ticks;
  delay_us(QUIET_US);
  printf("periodic, %u us period: %u interrupts in %u us\n", PERIOD_US, ticks, PERIODIC_WINDOW_US);
  CHECK(9, ticks >= MIN_PERIODIC_TICKS, "periodic: it fires again and again (%u, at least %u)", ticks, MIN_PERIODIC_TICKS);
  CHECK(10, ticks <= EXPECTED_TICKS + EXPECTED_TICKS / 2 + 2, "periodic: never faster than its period (%u in a window of %u periods)", ticks, EXPECTED_TICKS);
  CHECK(11, timer_ticks == after_stop, "periodic: an initial count of 0 stops it");

  /* TSC-deadline. */
  u32 eax, ebx, ecx, edx;
  cpuid(1, 0, &eax, &ebx, &ecx, &edx);
  CHECK(12, ecx & CPUID_1_ECX_TSC_DEADLINE, "CPUID.1:ECX[24]: the TSC-deadline timer is offered (ECX 0x%x)", ecx);
  lapic_write(LAPIC_LVT_TIMER, VECTOR_DEADLINE | LVT_TIMER_TSC_DEADLINE);
  CHECK(13, lapic_read(LAPIC_LVT_TIMER) == (VECTOR_DEADLINE | LVT_TIMER_TSC_DEADLINE), "TSC-deadline: the LVT timer reads back TSC-deadline mode (0x%x)", lapic_read(LAPIC_LVT_TIMER));
  u64 deadline = rdtsc() + us_to_tsc(DEADLINE_US);
  wrmsr(MSR_TSC_DEADLINE, deadline);
  CHECK(14, WAIT_FOR(deadline_ticks == 1, FIRE_TIMEOUT_US), "TSC-deadline: it fires");
  CHECK(15, last_tick_tsc >= deadline, "TSC-deadline: not before the TSC reached the deadline (%lu us after it)", tsc_to_us(last_tick_tsc - deadline));
  CHECK(16, rdmsr(MSR_TSC_DEADLINE) == 0, "TSC-deadline: IA32_TSC_DEADLINE reads 0 once it fired");
  wrmsr(MSR_TSC_DEADLINE, rdtsc() - 1);
  CHECK(17, WAIT_FOR(deadline_ticks == 2, FIRE_TIMEOUT_US), "TSC-deadline: a deadline already past fires");
  wrmsr(MSR_TSC_DEADLINE, rdtsc() + us_to_tsc(DEADLINE_US));
  wrmsr(MSR_TSC_DEADLINE, 0);
  lapic_write(LAPIC_TIMER_INITIAL, RATE_COUNT / 100);
  delay_us(DEADLINE_US + QUIET_US);
  CHECK(18, deadline_ticks == 2 && timer_ticks == after_stop, "TSC-deadline: a zeroed deadline disarms it, and the initial count does nothing in this mode");

  /* The mask: the timer counts, the expiry is dropped. */
  lapic_write(LAPIC_LVT_TIMER, VECTOR_TIMER | LVT_TIMER_ONE_SHOT | LVT_MASKED);
  lapic_write(LAPIC_TIMER_DIVIDE, TDCR_DIVIDE_BY_1);
  lapic_write(LAPIC_TIMER_INITIAL, (u32)(counts_per_ms * DEADLINE_US / 1000));
  delay_us(DEADLINE_US + QUIET_US);
  CHECK(19, timer_ticks == after_stop && lapic_read(LAPIC_TIMER_CURRENT) == 0, "masked: it counts down to 0 and delivers nothing");
  lapic_write(LAPIC_LVT_TIMER, VECTOR_TIMER | LVT_TIMER_ONE_SHOT);
  delay_us(QUIET_US);
  int delivered_at_unmask = timer_ticks != after_stop;
  if (eoi_at_delivery) {
    /* KVM's local APIC (the one that ends interrupts at delivery here) keeps an expiry as a
     * pending count and checks the LVT mask only when it injects it (kvm_inject_apic_timer_irqs
     * → kvm_apic_local_deliver); on this PVM host that happens after the guest's unmask, so the
     * expiry arrives then. The tests (src/vmm/guests.test.ts) hold each chip mode to its line. */
    printf("masked: the expiry %s at unmask (the host's local APIC checks the mask when it injects a pending expiry)\n", delivered_at_unmask ? "was delivered" : "was dropped");
  } else {
    CHECK(20, !delivered_at_unmask, "masked: unmasking after the expiry delivers nothing either (SDM 11.5.1: the mask inhibits the interrupt)");
  }
  cli();
  all_checks_passed("lapic-timer");
}
