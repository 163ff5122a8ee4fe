/* Time for our test guests: the TSC, calibrated once against the 8254 PIT's counter 2, so a guest
 * can wait a bounded time for something that should happen and measure how long it took.
 *
 * Calibration follows the classic PC recipe (Linux's pit_calibrate_tsc): counter 2's gate is
 * port 0x61 bit 0 and its output reads back in port 0x61 bit 5; in mode 0 ("interrupt on
 * terminal count", 8254 datasheet) the output goes low when the count is written and high when
 * it reaches zero, so the TSC ticks between the write and the rising output span a known time. */
#ifndef GUEST_TIMING_H
#define GUEST_TIMING_H

#include "runtime.h"

static inline u64 rdtsc(void) {
  u32 low, high;
  __asm__ volatile("rdtsc" : "=a"(low), "=d"(high));
  return ((u64)high << 32) | low;
}
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

/* Calibrates the TSC. Returns 0, or a non-zero reason when the PIT never counted or the TSC did
 * not move: the guest cannot keep time and must fail. */
int timing_init(void);
/* TSC ticks per millisecond (after timing_init). */
u64 tsc_per_ms(void);
/* Microseconds between two TSC readings. */
u64 tsc_to_us(u64 ticks);
u64 us_to_tsc(u64 microseconds);
/* The TSC value `microseconds` from now, and whether it has passed. */
u64 deadline_after_us(u64 microseconds);
static inline int deadline_passed(u64 deadline) { return rdtsc() >= deadline; }
/* Busy-waits (interrupts as they are) for `microseconds`. */
void delay_us(u64 microseconds);

/* Polls `condition` until it holds or `timeout_us` passes; the value is whether it held. */
#define WAIT_FOR(condition, timeout_us)                          \
  ({                                                             \
    u64 wait_deadline_ = deadline_after_us(timeout_us);          \
    int wait_held_;                                              \
    while (!(wait_held_ = (condition)) && !deadline_passed(wait_deadline_)) cpu_relax(); \
    wait_held_;                                                  \
  })

#endif
