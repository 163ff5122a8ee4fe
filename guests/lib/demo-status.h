/* The demo guest's status block (guests/demo.c): what its interrupt handlers count, in guest RAM
 * at a fixed guest-physical address, where `npm start` (src/vmm/demo/) reads it while the guest
 * runs. src/vmm/demo/demo-layout.ts holds the same numbers; a test keeps the two equal
 * (src/vmm/demo/demo-layout.test.ts).
 *
 * The block is 32-bit words. Each word has ONE writer (the CPU whose code counts it), so a plain
 * increment is enough, and a reader on another CPU or in the VMM sees each word whole (an aligned
 * 32-bit store is atomic: SDM vol. 3 §9.1.1). */
#ifndef GUEST_DEMO_STATUS_H
#define GUEST_DEMO_STATUS_H

/* 64 KiB: above the VMM's tables and boot page (0-0x8000), the SMP trampoline (0x8000) and the
 * multiboot information (0x9000-0x9fff), below the EBDA (0x9fc00) and our image (1 MiB). */
#define DEMO_STATUS_ADDRESS 0x10000
#define DEMO_STATUS_MAGIC 0x4f4d4544 /* "DEMO", little-endian: the block is the demo's */
#define DEMO_STATUS_VERSION 1

/* Word indexes. */
#define DEMO_WORD_MAGIC 0
#define DEMO_WORD_VERSION 1
#define DEMO_WORD_PHASE 2
#define DEMO_WORD_TIMER_PERIOD_US 3    /* the LAPIC timer's period the guest programmed */
#define DEMO_WORD_RUNNING_US 4         /* how long the sources ran, by the guest's TSC (set when they stop) */
#define DEMO_WORD_TIMER_TICKS 5        /* vCPU 0: timer handler runs while the sources ran */
#define DEMO_WORD_TIMER_LATE_TICKS 6   /* vCPU 0: timer handler runs after they stopped (a tick already requested) */
#define DEMO_WORD_IPIS_SENT 7          /* vCPU 0: fixed IPIs sent to vCPU 1 */
#define DEMO_WORD_IPIS_SKIPPED 8       /* vCPU 0: ticks that sent none, the previous one still in flight */
#define DEMO_WORD_IPIS_HANDLED 9       /* vCPU 1 */
#define DEMO_WORD_LEVEL_QUEUED 10      /* vCPU 0: units of level work queued (LEVEL_WORK) */
#define DEMO_WORD_LEVEL_HANDLED 11     /* vCPU 1: level handler runs that completed a unit (LEVEL_ACK) */
#define DEMO_WORD_LEVEL_IDLE 12        /* vCPU 1: level handler runs that found no work */
#define DEMO_WORD_MSIX_RAISED 13       /* vCPU 0: MSI-X raises asked of the device (RAISE) */
#define DEMO_WORD_MSIX_SKIPPED 14      /* vCPU 0: ticks that raised none, the previous one still in flight */
#define DEMO_WORD_MSIX_HANDLED 15      /* vCPU 1 */
#define DEMO_WORD_EOI_AT_DELIVERY 16   /* 1 when the local APIC ended an interrupt before its handler ran (irqtest.h) */
#define DEMO_WORD_LEVEL_GSI 17         /* the GSI of the level function's INTA# (its Interrupt Line) */
#define DEMO_WORDS 18

/* DEMO_WORD_PHASE. */
#define DEMO_PHASE_BOOTING 0  /* setting up: devices, vCPU 1, routes */
#define DEMO_PHASE_RUNNING 1  /* the sources run */
#define DEMO_PHASE_DRAINING 2 /* the sources stopped; waiting for the last interrupts */
#define DEMO_PHASE_DONE 3     /* the guest printed its summary and exits */

/* The command line (fw_cfg): "duration_ms=<n> timer_us=<n>", either may be left out. */
#define DEMO_DEFAULT_DURATION_MS 2000
#define DEMO_DEFAULT_TIMER_PERIOD_US 1000
#define DEMO_MIN_TIMER_PERIOD_US 200 /* the userspace chip's LAPIC holds a periodic timer to at least 200 µs */
#define DEMO_MAX_TIMER_PERIOD_US 1000000
#define DEMO_MAX_DURATION_MS 3600000

/* Vectors: one per source, each in its own priority class (SDM vol. 3 §11.8.3). */
#define DEMO_VECTOR_TIMER 0x40
#define DEMO_VECTOR_IPI 0x50
#define DEMO_VECTOR_LEVEL 0x60
#define DEMO_VECTOR_MSIX 0x70

/* isa-debug-exit values beyond irqtest.h's CHECK codes (1-94): 0 means every count matched. */
#define DEMO_EXIT_UNHANDLED 20 /* after the drain, a source's handled count differs from what was requested */

#endif
