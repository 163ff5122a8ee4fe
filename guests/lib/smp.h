/* SMP bring-up for our test guests: the MP start-up sequence (SDM vol. 3 §9.4.4.1, "Typical BSP
 * initialization sequence"): the BSP copies a real-mode trampoline to SMP_TRAMPOLINE_ADDRESS and
 * sends INIT, then two Start-up IPIs whose vector is that page's number, to all excluding itself.
 * Each application processor wakes in real mode at the page, enters 32-bit protected mode with
 * the trampoline's own GDT, then long mode with the VMM's page tables (CR3 0x1000) and GDT (0x500,
 * src/kvm/long-mode.ts), takes a ticket that gives it a CPU number and a stack, loads the BSP's
 * IDT, enables its local APIC in the BSP's mode (xAPIC or x2APIC), checks in, and calls ap_main.
 *
 * A second SIPI reaching an AP that already runs is ignored by the hardware (SDM §9.4.4.1:
 * Start-up IPIs are honoured only in the wait-for-SIPI state); the ticket counts every arrival at
 * the trampoline, so a VMM that started an AP twice shows as more arrivals than APs. */
#ifndef GUEST_SMP_H
#define GUEST_SMP_H

#include "runtime.h"

/* The trampoline's page: below 1 MiB (a SIPI vector names a page there), above the VMM's GDT
 * (0x500) and page tables (0x1000-0x6fff), and clear of our image (1 MiB up). */
#define SMP_TRAMPOLINE_ADDRESS 0x8000 /* no suffix: the trampoline's assembly uses it too */
#define SMP_MAX_CPUS 16 /* src/vmm/machine-layout.ts MAX_VCPUS */

typedef void (*ap_main_fn)(u32 cpu);

/* Starts the application processors and waits (bounded) until `cpu_count` - 1 of them checked
 * in. CPU 0 is the caller; APs are numbered 1.. in the order they arrive. Interrupts must be off
 * on the BSP's side only as far as the caller's handlers need. Returns 0 when every AP checked
 * in, or the number missing. ap_main runs on each AP with interrupts off; if it returns, the AP
 * halts with interrupts off. */
u32 smp_start_all(u32 cpu_count, ap_main_fn ap_main);
/* APs that checked in so far (not counting the BSP). */
u32 smp_aps_online(void);
/* Arrivals at the trampoline so far: one per AP start (more means an AP started twice). */
u32 smp_trampoline_arrivals(void);
/* The local APIC ID each CPU read at check-in (CPU 0: the BSP's, read by smp_start_all). */
u32 smp_apic_id(u32 cpu);

#endif
