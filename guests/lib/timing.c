#include "machine.h"
#include "timing.h"

#define PIT_COUNTER2 (PORT_PIT + 2)
#define PIT_CONTROL (PORT_PIT + 3)
#define SYSTEM_CONTROL_B PORT_SYSTEM_CONTROL_B
#define SCB_GATE2 0x01        /* counter 2's GATE input */
#define SCB_SPEAKER 0x02      /* speaker data enable: kept off */
#define SCB_OUT2 0x20         /* counter 2's OUT pin (read-only) */
/* Control word: counter 2 (bits 7:6 = 10), LSB then MSB (5:4 = 11), mode 0 (3:1 = 000), binary. */
#define PIT_COUNTER2_MODE0 0xb0
#define PIT_HZ 1193182u
#define CALIBRATION_MS 10u
#define CALIBRATION_COUNT (PIT_HZ * CALIBRATION_MS / 1000u) /* 11931: fits 16 bits */
/* A PIT that never raises OUT2 must not hang us: every poll is a port exit (microseconds at
 * least), so this bounds the wait to seconds. */
#define CALIBRATION_MAX_POLLS 2000000u
#define TSC_MIN_TICKS_PER_MS 1000u /* below 1 MHz the TSC is not counting */

static u64 ticks_per_ms;

int timing_init(void) {
  u8 control = inb(SYSTEM_CONTROL_B);
  outb(SYSTEM_CONTROL_B, (u8)((control & ~SCB_SPEAKER) | SCB_GATE2));
  outb(PIT_CONTROL, PIT_COUNTER2_MODE0);
  outb(PIT_COUNTER2, (u8)CALIBRATION_COUNT);
  u64 start = rdtsc();
  outb(PIT_COUNTER2, (u8)(CALIBRATION_COUNT >> 8));
  u32 polls = 0;
  /* Mode 0 lowers OUT2 at the count write: a high output right away means no PIT answers. */
  if (inb(SYSTEM_CONTROL_B) & SCB_OUT2) return 1;
  while ((inb(SYSTEM_CONTROL_B) & SCB_OUT2) == 0) {
    if (++polls == CALIBRATION_MAX_POLLS) return 2;
  }
  u64 ticks = rdtsc() - start;
  outb(SYSTEM_CONTROL_B, control & (u8)~SCB_GATE2);
  ticks_per_ms = ticks / CALIBRATION_MS;
  return ticks_per_ms < TSC_MIN_TICKS_PER_MS ? 3 : 0;
}

u64 tsc_per_ms(void) { return ticks_per_ms; }
u64 tsc_to_us(u64 ticks) { return ticks * 1000 / ticks_per_ms; }
u64 us_to_tsc(u64 microseconds) { return microseconds * ticks_per_ms / 1000; }
u64 deadline_after_us(u64 microseconds) { return rdtsc() + us_to_tsc(microseconds); }

void delay_us(u64 microseconds) {
  u64 deadline = deadline_after_us(microseconds);
  while (!deadline_passed(deadline)) cpu_relax();
}
