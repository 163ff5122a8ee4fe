/**
 * `IrqChip`: one per VM, between the devices and the vCPUs (crosvm `devices::irqchip::IrqChip`,
 * seed 001; seed-apis.md §2.4). It registers the events devices raise interrupts with, routes
 * GSIs to the PIC, the IOAPIC or an MSI, asserts lines, injects into vCPUs, carries EOIs back to
 * level-triggered devices as resample events, and wakes halted vCPUs.
 *
 * The main thread (or whichever thread the VMM devotes to it) waits on `irqEventTokens()` and
 * `irqDelayedEventToken()` and calls `serviceIrqEvent` / `processDelayedIrqEvents`. Each vCPU
 * thread loops: `waitUntilRunnable`, `injectInterrupts`, run, and on exits `broadcastEoi` (an
 * IOAPIC EOI exit) or `halted` (HLT).
 */

import type { Event } from '../event/event.ts';
import type { IrqEdgeEvent, IrqLevelEvent } from '../event/irq-event.ts';
import type { IrqRoute } from '../routing/irq-route.ts';
import type { Bus } from './bus.ts';
import type { IrqAllocator } from './irq-allocator.ts';
import type { IrqChipCap, IrqEventIndex, IrqEventSource, MPState, VcpuRunState } from './types.ts';
import type { Vcpu } from './vcpu.ts';

/** One entry of `irqEventTokens()`: an event the service thread waits on, and where it came from. */
export interface IrqEventToken {
  readonly index: IrqEventIndex;
  readonly source: IrqEventSource;
  readonly event: Event;
}

export interface IrqChip {
  /** Attaches the vCPU with this index (it must exist in the chip: ENOENT otherwise). */
  addVcpu(vcpuId: number, vcpu: Vcpu): void;
  /** Registers an edge event for GSI `irq`; returns its index when this chip services it itself. */
  registerEdgeIrqEvent(irq: number, event: IrqEdgeEvent, source: IrqEventSource): IrqEventIndex | undefined;
  /** Unregisters the first registration of this event on `irq`; nothing happens when there is none. */
  unregisterEdgeIrqEvent(irq: number, event: IrqEdgeEvent): void;
  /** Registers a level event: the line stays asserted until the guest's EOI, which signals its resample event. */
  registerLevelIrqEvent(irq: number, event: IrqLevelEvent, source: IrqEventSource): IrqEventIndex | undefined;
  unregisterLevelIrqEvent(irq: number, event: IrqLevelEvent): void;
  /** Adds a route under the table's rules (one kind per GSI; a conflicting route is replaced). */
  routeIrq(route: IrqRoute): void;
  /** Replaces every route: all of them, or (on EINVAL) none. */
  setIrqRoutes(routes: readonly IrqRoute[]): void;
  /** Every registered event, for the service thread to wait on. */
  irqEventTokens(): IrqEventToken[];
  /**
   * Asserts or deasserts GSI `irq` as the VMM's own line (KVM_IRQ_LINE). Returns KVM's status:
   * negative when nothing took it, 0 when coalesced, positive when delivered.
   */
  serviceIrq(irq: number, level: boolean): number;
  /** Services the event at `index` after its token fired: consumes it and asserts (edge: pulses) its GSI. */
  serviceIrqEvent(index: IrqEventIndex): void;
  /** An EOI of `vector` reached the IOAPIC from outside the chip (a KVM IOAPIC EOI exit). */
  broadcastEoi(vector: number): void;
  /** Injects what is pending for this vCPU (at most one external interrupt) and requests an interrupt window if more waits. */
  injectInterrupts(vcpu: Vcpu): void;
  /** The vCPU executed HLT. */
  halted(vcpuId: number): void;
  /** Blocks (worker threads only) until the vCPU is runnable, or until a kick: 'interrupted'. */
  waitUntilRunnable(vcpu: Vcpu): VcpuRunState;
  /** `waitUntilRunnable` without blocking the thread. */
  waitUntilRunnableAsync(vcpu: Vcpu): Promise<VcpuRunState>;
  /** Makes every vCPU's current or next wait return 'interrupted', once. */
  kickHaltedVcpus(): void;
  getMpState(vcpuId: number): MPState;
  setMpState(vcpuId: number, state: MPState): void;
  /** A shallow clone on this thread, sharing everything (the delayed-event token included). */
  tryClone(): IrqChip;
  /** Places the chip's devices on the buses and moves the IRQ allocator past the IOAPIC's pins. */
  finalizeDevices(resources: IrqAllocator, ioBus: Bus, mmioBus: Bus): void;
  /** Retries events whose assertion was deferred because the IOAPIC was busy on another thread. */
  processDelayedIrqEvents(): void;
  /** Signalled when `processDelayedIrqEvents` has work: this chip object's (and its clones') deferred assertions. */
  irqDelayedEventToken(): Event | undefined;
  checkCapability(cap: IrqChipCap): boolean;
}
