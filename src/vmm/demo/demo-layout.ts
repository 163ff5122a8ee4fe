/**
 * The demo guest's status block (guests/demo.c) as the VMM reads it: where it lives in guest RAM,
 * what each 32-bit word counts, and the guest's command line. guests/lib/demo-status.h holds the
 * same numbers for the guest; demo-layout.test.ts keeps the two equal.
 *
 * The address is guest RAM nothing else uses: above the VMM's tables and boot page (0–0x8000,
 * loader/long-mode-loader.ts), the SMP trampoline (0x8000, guests/lib/smp.h) and the multiboot
 * information (0x9000–0x9fff, loader/multiboot-loader.ts), below the EBDA and the image (1 MiB).
 */

export const DEMO_STATUS_ADDRESS = 0x10000;
/** "DEMO" in little-endian ASCII: the guest has claimed the block. */
export const DEMO_STATUS_MAGIC = 0x4f4d4544;
export const DEMO_STATUS_VERSION = 1;

/** Word indexes in the block (each word has one writer: the CPU named in demo-status.h). */
export const DemoWord = {
  Magic: 0,
  Version: 1,
  Phase: 2,
  TimerPeriodUs: 3,
  RunningUs: 4,
  TimerTicks: 5,
  TimerLateTicks: 6,
  IpisSent: 7,
  IpisSkipped: 8,
  IpisHandled: 9,
  LevelQueued: 10,
  LevelHandled: 11,
  LevelIdle: 12,
  MsixRaised: 13,
  MsixSkipped: 14,
  MsixHandled: 15,
  EoiAtDelivery: 16,
  LevelGsi: 17,
} as const;
export const DEMO_WORDS = 18;

export const DemoPhase = {
  Booting: 0,
  Running: 1,
  Draining: 2,
  Done: 3,
} as const;
export type DemoPhase = (typeof DemoPhase)[keyof typeof DemoPhase];

/** The guest's defaults and limits for its command line. */
export const DEMO_DEFAULT_DURATION_MS = 2000;
export const DEMO_DEFAULT_TIMER_PERIOD_US = 1000;
export const DEMO_MIN_TIMER_PERIOD_US = 200;
export const DEMO_MAX_TIMER_PERIOD_US = 1_000_000;
export const DEMO_MAX_DURATION_MS = 3_600_000;

/** The guest's vectors, one per source. */
export const DemoVector = {
  Timer: 0x40,
  Ipi: 0x50,
  Level: 0x60,
  Msix: 0x70,
} as const;

/** isa-debug-exit values: 0 every count matched; this one a source's did not; others a failed set-up check. */
export const DEMO_EXIT_UNHANDLED = 20;

/** The sources, in the order the status line and the table show them. */
export const DEMO_SOURCES = ['timer', 'ipi', 'level', 'msix'] as const;
export type DemoSource = (typeof DEMO_SOURCES)[number];

export const DEMO_SOURCE_LABELS: Readonly<Record<DemoSource, string>> = {
  timer: 'timer',
  ipi: 'IPI',
  level: 'level',
  msix: 'MSI-X',
};

/** The guest's command line: `duration_ms=<n> timer_us=<n>` (guests/demo.c reads it from fw_cfg). */
export function demoCommandLine(options: { readonly durationMs: number; readonly timerPeriodUs: number }): string {
  return `duration_ms=${options.durationMs} timer_us=${options.timerPeriodUs}`;
}
