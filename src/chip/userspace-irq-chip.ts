/**
 * `UserspaceIrqChip`: the `IrqChip` in which the 8259A pair, the IOAPIC and every local APIC are
 * ours (crosvm `UserspaceIrqChip`; seed-apis.md §2.4–2.7), usable across worker threads.
 *
 * Threads. The chip object a VMM creates is the *owner*: devices register their events with it and
 * it services them. `createView()` gives a descriptor from which another thread (a vCPU worker, a
 * device worker) builds a *view*: the same controllers (their state is shared memory), the same
 * routing table (shared, any thread may change it) and the same event table (sent by the owner,
 * synchronised before each use; irq-event-registry.ts). A view does everything but register
 * events: inject, take EOIs, signal resamples, halt and wait, service events and lines. Deferred
 * assertions (`processDelayedIrqEvents`) are kept per thread, so each view has its own delayed
 * token; clones (`tryClone`, same thread) share the original's.
 *
 * Lines, routes and events are the `LegacyIrqCore`'s (legacy-irq-core.ts), which this chip shares
 * with `KvmSplitIrqChip`: here the IOAPIC's messages and the MSI routes go to the `ApicBus`, and
 * the PIC's INT output is the BSP's LINT0. The chip adds the local APICs, their bus and the vCPU
 * side (inject, halt, wait, kick, MP state, timers).
 *
 * Locks. The core's line lock is outermost: line lock → PIC → IOAPIC → LAPIC
 * (docs/architecture.md).
 *
 * Snapshots. `snapshot()` saves the core's sections (line sources and counters, PIC, IOAPIC,
 * routes, the registered events' pending counts and this thread's deferred assertions) around the
 * APIC bus and every local APIC (chip-snapshot.ts); `restore` validates all of it, each
 * controller's section in a scratch copy of that controller, before it changes anything.
 *
 * Where this chip differs from crosvm's on purpose: a vCPU's interrupt-window request is set by
 * `injectInterrupts` on the vCPU's own thread, not by the thread that delivers (that one rings the
 * local APIC's doorbell); a halted vCPU with IF = 0 wakes only for NMI, SMI, INIT or SIPI, as in
 * KVM (crosvm makes it runnable on any accepted interrupt); a vCPU waiting for INIT or SIPI takes
 * no external interrupt; PIC interrupts reach whichever vCPU has LINT0 in ExtINT mode (the BSP
 * after RESET), as in KVM, rather than vCPU 0 by decree; the VMM's `serviceIrq` line is a source
 * of its own that an EOI does not lower (KVM's per-source lines; crosvm lowers the pin).
 *
 * Chip state words: the core's (legacy-irq-core.ts), then, from its `extraWordsAt`, one kick flag
 * per vCPU: 1 = the next wait returns 'interrupted'.
 */

import { HostClock, type Clock } from '../base/clock.ts';
import { ErrorCode, IrqChipError, check, checkRange } from '../base/errors.ts';
import { highHalf, lowHalf } from '../base/integers.ts';
import { threadMayBlock } from '../base/thread.ts';
import type { Event } from '../event/event.ts';
import type { IrqEdgeEvent, IrqLevelEvent } from '../event/irq-event.ts';
import type { IrqRoute } from '../routing/irq-route.ts';
import { IOAPIC_PIN_COUNT, IoapicVersion } from '../x86/ioapic/ioapic.ts';
import type { Ioapic } from '../x86/ioapic/ioapic.ts';
import { ApicBus, type ApicBusDescriptor } from '../x86/lapic/apic-bus.ts';
import { LocalApic, MpState, NO_INTERRUPT, type LocalApicDescriptor } from '../x86/lapic/local-apic.ts';
import type { PicPair } from '../x86/pic/pic.ts';
import type { Bus } from './bus.ts';
import { chipHasCapability } from './chip-capabilities.ts';
import { placeControllersOnBuses } from './chip-bus-devices.ts';
import { decodeChipSnapshot, encodeChipSnapshot, scratchDescriptor } from './chip-snapshot.ts';
import type { IrqAllocator } from './irq-allocator.ts';
import type { IrqChip, IrqEventToken } from './irq-chip.ts';
import { LegacyIrqCore, type ChipCounterName, type LegacyIrqCoreDescriptor, type LegacyIrqCoreWiring, type ValidatedCoreSections } from './legacy-irq-core.ts';
import { mpStateFromApic, mpStateToApic, type IrqChipCap, type IrqEventIndex, type IrqEventSource, type MPState, type VcpuRunState } from './types.ts';
import type { Vcpu } from './vcpu.ts';

export { CHIP_COUNTER_NAMES, type ChipCounterName } from './legacy-irq-core.ts';

/** Positions of the sections: LINE, PIC2, IOAP, ABUS, one LAPC per vCPU, then ROUT and EVNT. */
const Section = { Lines: 0, Pic: 1, Ioapic: 2, Bus: 3, FirstLocalApic: 4 } as const;
/** Sections besides the local APICs'. */
const FIXED_SECTIONS = 6;

/** The most vCPUs a chip takes: the xAPIC's 8-bit physical IDs, broadcast excluded. */
export const MAX_VCPUS = 255;
/** Longest sleep in `waitUntilRunnable` when no timer is due (a kick or an interrupt ends it sooner). */
const IDLE_WAIT_MS = 1000;

export interface UserspaceIrqChipOptions {
  readonly vcpuCount: number;
  /** Time for the LAPIC timers and the IOAPIC's storm limiter; default the host's clock. */
  readonly clock?: Clock;
  /** IOAPIC version: 0x20 (default, with the EOI register; enables directed EOI) or 0x11. */
  readonly ioapicVersion?: IoapicVersion;
  /** Guest TSC frequency: given, the LAPIC timers have TSC-deadline mode. */
  readonly tscHz?: number;
}

/** What another thread needs to build a view of the chip. Carry it with `postMessage(descriptor, [descriptor.registry])`. */
export interface UserspaceIrqChipDescriptor extends LegacyIrqCoreDescriptor {
  readonly kind: 'userspace-irq-chip';
  readonly vcpuCount: number;
  readonly tscDeadline: boolean;
  readonly bus: ApicBusDescriptor;
  readonly localApics: readonly LocalApicDescriptor[];
}

/** The parts of a chip object; `tryClone` copies the reference, so clones share all of it. */
interface ChipParts {
  readonly core: LegacyIrqCore;
  readonly vcpuCount: number;
  readonly tscDeadline: boolean;
  readonly clock: Clock;
  readonly bus: ApicBus;
  readonly localApics: readonly LocalApic[];
  /** Index of vCPU 0's kick flag in the core's words. */
  readonly kicks: number;
}

/** What `restore` applies once every section has been validated. */
interface ValidatedSnapshot {
  readonly sections: readonly Uint8Array[];
  readonly core: ValidatedCoreSections;
}

export class UserspaceIrqChip implements IrqChip {
  private constructor(private readonly parts: ChipParts) {}

  /** A new chip (the owner): controllers at RESET, the default routing table, no events. */
  static create(options: UserspaceIrqChipOptions): UserspaceIrqChip {
    checkRange(options.vcpuCount, 1, MAX_VCPUS, 'vCPU count');
    const version = options.ioapicVersion ?? IoapicVersion.V20;
    const clock = options.clock ?? new HostClock();
    const bus = ApicBus.create();
    const localApics = Array.from({ length: options.vcpuCount }, (_, index) =>
      LocalApic.create({
        busIndex: index,
        bsp: index === 0,
        clock,
        ...(options.tscHz === undefined ? {} : { tscHz: options.tscHz }),
        directedEoi: version === IoapicVersion.V20,
      }),
    );
    const core = LegacyIrqCore.create({ ioapicVersion: version, extraWords: options.vcpuCount }, coreWiring(clock, bus, localApics));
    return UserspaceIrqChip.assemble(core, options.vcpuCount, options.tscHz !== undefined, clock, bus, localApics);
  }

  /** A view of a chip on this thread, from a descriptor made by the owner's `createView()`. */
  static fromDescriptor(descriptor: UserspaceIrqChipDescriptor, options: { readonly clock?: Clock } = {}): UserspaceIrqChip {
    const kind: unknown = descriptor.kind;
    check(kind === 'userspace-irq-chip', ErrorCode.EINVAL, 'not a userspace irqchip descriptor');
    const clock = options.clock ?? new HostClock();
    const bus = ApicBus.fromState(descriptor.bus);
    const localApics = descriptor.localApics.map((apic) => LocalApic.fromState(apic, { clock }));
    const core = LegacyIrqCore.fromDescriptor(descriptor, coreWiring(clock, bus, localApics));
    return UserspaceIrqChip.assemble(core, descriptor.vcpuCount, descriptor.tscDeadline, clock, bus, localApics);
  }

  /** Wires one thread's views of the local APICs to the core's controllers and to the bus. */
  private static assemble(core: LegacyIrqCore, vcpuCount: number, tscDeadline: boolean, clock: Clock, bus: ApicBus, localApics: readonly LocalApic[]): UserspaceIrqChip {
    for (const apic of localApics) {
      apic.setIpiSink(bus);
      apic.setEoiListener(core.ioapic);
      apic.setExtIntController(core.pic);
      bus.addMember(apic);
    }
    return new UserspaceIrqChip({ core, vcpuCount, tscDeadline, clock, bus, localApics, kicks: core.extraWordsAt });
  }

  /**
   * A descriptor for a view on another thread (owner only). Send it with its port transferred:
   * `worker.postMessage(descriptor, [descriptor.registry])`.
   */
  createView(): UserspaceIrqChipDescriptor {
    const { parts } = this;
    return {
      kind: 'userspace-irq-chip',
      vcpuCount: parts.vcpuCount,
      tscDeadline: parts.tscDeadline,
      ...parts.core.viewDescriptor(),
      bus: parts.bus.descriptor(),
      localApics: parts.localApics.map((apic) => apic.descriptor()),
    };
  }

  // -------------------------------------------------------------------------------------------
  // The controllers, for the VMM and for observation.
  // -------------------------------------------------------------------------------------------

  get vcpuCount(): number {
    return this.parts.vcpuCount;
  }

  get pic(): PicPair {
    return this.parts.core.pic;
  }

  get ioapic(): Ioapic {
    return this.parts.core.ioapic;
  }

  get apicBus(): ApicBus {
    return this.parts.bus;
  }

  localApic(vcpuId: number): LocalApic {
    return this.apicOf(vcpuId);
  }

  /** The chip's own counters (the controllers keep theirs: `pic.counters()`, ...). */
  counters(): Readonly<Record<ChipCounterName, number>> {
    return this.parts.core.counters();
  }

  /** The routes now in force (a copy). */
  routes(): IrqRoute[] {
    return this.parts.core.routes();
  }

  // -------------------------------------------------------------------------------------------
  // IrqChip: registration and routing
  // -------------------------------------------------------------------------------------------

  /**
   * Checks that `vcpu` can be this chip's vCPU `vcpuId`. The chip keeps no handle on it: every
   * call that injects names its vCPU, and wake-ups go through the local APIC's doorbell, which any
   * thread may ring (a KVM vCPU's run structure belongs to its own thread).
   */
  addVcpu(vcpuId: number, vcpu: Vcpu): void {
    this.apicOf(vcpuId);
    check(vcpu.id === vcpuId, ErrorCode.EINVAL, `vCPU ${vcpu.id} added as vCPU ${vcpuId}`);
  }

  registerEdgeIrqEvent(irq: number, event: IrqEdgeEvent, source: IrqEventSource): IrqEventIndex {
    return this.parts.core.registerEvent(irq, event.getTrigger(), undefined, source);
  }

  unregisterEdgeIrqEvent(irq: number, event: IrqEdgeEvent): void {
    this.parts.core.unregisterEvent(irq, event.getTrigger());
  }

  registerLevelIrqEvent(irq: number, event: IrqLevelEvent, source: IrqEventSource): IrqEventIndex {
    return this.parts.core.registerEvent(irq, event.getTrigger(), event.getResample(), source);
  }

  unregisterLevelIrqEvent(irq: number, event: IrqLevelEvent): void {
    this.parts.core.unregisterEvent(irq, event.getTrigger());
  }

  routeIrq(route: IrqRoute): void {
    this.parts.core.routeIrq(route);
  }

  setIrqRoutes(routes: readonly IrqRoute[]): void {
    this.parts.core.setIrqRoutes(routes);
  }

  irqEventTokens(): IrqEventToken[] {
    return this.parts.core.irqEventTokens();
  }

  // -------------------------------------------------------------------------------------------
  // IrqChip: raising interrupts
  // -------------------------------------------------------------------------------------------

  serviceIrq(irq: number, level: boolean): number {
    return this.parts.core.serviceIrq(irq, level);
  }

  serviceIrqEvent(index: IrqEventIndex): void {
    this.parts.core.serviceIrqEvent(index);
  }

  processDelayedIrqEvents(): void {
    this.parts.core.processDelayedIrqEvents();
  }

  irqDelayedEventToken(): Event {
    return this.parts.core.irqDelayedEventToken();
  }

  broadcastEoi(vector: number): void {
    this.parts.core.broadcastEoi(vector);
  }

  // -------------------------------------------------------------------------------------------
  // IrqChip: vCPUs
  // -------------------------------------------------------------------------------------------

  injectInterrupts(vcpu: Vcpu): void {
    const apic = this.apicOf(vcpu.id);
    this.fireDueTimer(apic);
    const initSipi = apic.processInitSipi();
    if (initSipi.initReset) vcpu.applyInit();
    if (initSipi.startup !== undefined) vcpu.applySipi(initSipi.startup);
    if (apic.takeNmi()) {
      vcpu.injectNmi();
      this.makeRunnable(apic);
    }
    // At most one external interrupt per entry (seed-apis.md §6.28), and none for a vCPU that is
    // not running code: waiting for INIT or SIPI (crosvm injects only when runnable or halted).
    if (mayTakeInterrupts(apic) && vcpu.readyForInterrupt()) {
      const vector = apic.acknowledgeInterrupt();
      if (vector !== NO_INTERRUPT) {
        vcpu.interrupt(vector);
        this.makeRunnable(apic);
      }
    }
    vcpu.setInterruptWindowRequested(apic.hasInterrupt());
  }

  halted(vcpuId: number): void {
    this.apicOf(vcpuId).setMpState(MpState.Halted);
  }

  waitUntilRunnable(vcpu: Vcpu): VcpuRunState {
    check(threadMayBlock, ErrorCode.EAGAIN, 'waitUntilRunnable blocks; call it on a worker thread, or use waitUntilRunnableAsync');
    const apic = this.apicOf(vcpu.id);
    for (;;) {
      const generation = apic.doorbellGeneration();
      const state = this.checkRunnable(vcpu, apic);
      if (state !== undefined) return state;
      apic.waitForDoorbell(generation, this.sleepMs(apic));
    }
  }

  async waitUntilRunnableAsync(vcpu: Vcpu): Promise<VcpuRunState> {
    const apic = this.apicOf(vcpu.id);
    for (;;) {
      const generation = apic.doorbellGeneration();
      const state = this.checkRunnable(vcpu, apic);
      if (state !== undefined) return state;
      await apic.waitForDoorbellAsync(generation, this.sleepMs(apic));
    }
  }

  kickHaltedVcpus(): void {
    const { core, localApics, kicks } = this.parts;
    localApics.forEach((apic, index) => {
      Atomics.store(core.words, kicks + index, 1);
      apic.wake();
    });
  }

  getMpState(vcpuId: number): MPState {
    return mpStateFromApic(this.apicOf(vcpuId).mpState());
  }

  setMpState(vcpuId: number, state: MPState): void {
    const apic = this.apicOf(vcpuId);
    apic.setMpState(mpStateToApic(state));
  }

  tryClone(): UserspaceIrqChip {
    return new UserspaceIrqChip(this.parts);
  }

  finalizeDevices(resources: IrqAllocator, ioBus: Bus, mmioBus: Bus): void {
    const { core, localApics } = this.parts;
    placeControllersOnBuses(core.pic, core.ioapic, localApics, ioBus, mmioBus);
    resources.advanceTo(IOAPIC_PIN_COUNT);
  }

  checkCapability(cap: IrqChipCap): boolean {
    return chipHasCapability(cap, this.parts.tscDeadline);
  }

  // -------------------------------------------------------------------------------------------
  // Snapshots
  // -------------------------------------------------------------------------------------------

  /**
   * The whole chip as bytes (chip-snapshot.ts): the line sources and counters, every controller,
   * the routes, the pending counts of each registered event's trigger and resample, and this
   * thread's deferred assertions. Kicks and the registry's generation are not state. Each part is
   * taken under its own lock; take the snapshot with vCPUs and devices paused for the whole to be
   * one instant.
   */
  snapshot(): Uint8Array {
    const { core, bus, localApics } = this.parts;
    const sections = core.snapshotSections();
    return encodeChipSnapshot([
      sections.lines,
      sections.pic,
      sections.ioapic,
      bus.snapshot(),
      ...localApics.map((apic) => apic.snapshot()),
      sections.routes,
      sections.events,
    ]);
  }

  /**
   * Restores `snapshot()` bytes into a chip configured the same way (vCPU count, IOAPIC version,
   * TSC frequency) with the same registrations (slots, their GSIs, edge or level). Everything is
   * validated before anything is applied (each controller's section by restoring it into a
   * scratch copy of that controller), so truncated, foreign, corrupted or mismatched bytes throw
   * EINVAL and change nothing.
   */
  restore(bytes: Uint8Array): void {
    this.applySnapshot(this.validateSnapshot(bytes));
  }

  /** When the earliest LAPIC timer expires (Clock ns), for a VMM that drives timers itself; undefined if none runs. */
  nextTimerDeadlineNs(): number | undefined {
    let earliest: number | undefined;
    for (const apic of this.parts.localApics) {
      const deadline = apic.nextTimerDeadlineNs();
      if (deadline !== undefined && (earliest === undefined || deadline < earliest)) earliest = deadline;
    }
    return earliest;
  }

  /** Delivers every LAPIC timer expiry that is due, and the IOAPIC's deferred re-deliveries. */
  processTimers(): void {
    for (const apic of this.parts.localApics) this.fireDueTimer(apic);
    this.parts.core.processIoapicDeferrals();
  }

  // -------------------------------------------------------------------------------------------
  // Internals
  // -------------------------------------------------------------------------------------------

  private apicOf(vcpuId: number): LocalApic {
    const apic = this.parts.localApics[vcpuId];
    if (apic === undefined || !Number.isInteger(vcpuId)) {
      throw new IrqChipError(ErrorCode.ENOENT, `no vCPU ${String(vcpuId)} (the chip has ${this.parts.vcpuCount})`);
    }
    return apic;
  }

  /** Decodes and checks every section; throws EINVAL, having changed nothing, at the first problem. */
  private validateSnapshot(bytes: Uint8Array): ValidatedSnapshot {
    const { core, bus, localApics, clock, vcpuCount } = this.parts;
    const sections = decodeChipSnapshot(bytes, FIXED_SECTIONS + vcpuCount);
    const section = (index: number): Uint8Array => sections[index] ?? new Uint8Array(0);
    const validatedCore = core.validateSections({
      lines: section(Section.Lines),
      pic: section(Section.Pic),
      ioapic: section(Section.Ioapic),
      routes: section(Section.FirstLocalApic + vcpuCount),
      events: section(Section.FirstLocalApic + vcpuCount + 1),
    });
    ApicBus.fromState(scratchDescriptor(bus.descriptor())).restore(section(Section.Bus));
    localApics.forEach((apic, index) => {
      LocalApic.fromState(scratchDescriptor(apic.descriptor()), { clock }).restore(section(Section.FirstLocalApic + index));
    });
    return { sections, core: validatedCore };
  }

  /** Applies a validated snapshot; the controllers re-check their sections, which cannot fail now. */
  private applySnapshot(snapshot: ValidatedSnapshot): void {
    const { core, bus, localApics } = this.parts;
    const section = (index: number): Uint8Array => snapshot.sections[index] ?? new Uint8Array(0);
    // The PIC first (with the lines and the IOAPIC): its output is the BSP's LINT0, whose level
    // the BSP's own section then sets.
    core.restoreControllers(snapshot.core);
    bus.restore(section(Section.Bus));
    localApics.forEach((apic, index) => {
      apic.restore(section(Section.FirstLocalApic + index));
    });
    core.restoreTables(snapshot.core);
  }

  /** The vCPU's state for a wait: 'interrupted' (a kick, consumed), 'runnable', or undefined to sleep on. */
  private checkRunnable(vcpu: Vcpu, apic: LocalApic): VcpuRunState | undefined {
    if (Atomics.exchange(this.parts.core.words, this.parts.kicks + vcpu.id, 0) !== 0) return 'interrupted';
    this.injectInterrupts(vcpu);
    const state = apic.mpState();
    if (state === MpState.Runnable) return 'runnable';
    if (state === MpState.Halted && apic.hasPendingEvents(vcpu.readyForInterrupt())) {
      this.makeRunnable(apic);
      return 'runnable';
    }
    return undefined;
  }

  private makeRunnable(apic: LocalApic): void {
    if (apic.mpState() === MpState.Halted) apic.setMpState(MpState.Runnable);
  }

  private fireDueTimer(apic: LocalApic): void {
    const deadline = apic.nextTimerDeadlineNs();
    if (deadline !== undefined && deadline <= this.parts.clock.nowNs()) apic.processTimerExpiry();
  }

  /** How long a waiting vCPU may sleep: until its timer is due, or a long idle span. */
  private sleepMs(apic: LocalApic): number {
    const deadline = apic.nextTimerDeadlineNs();
    if (deadline === undefined) return IDLE_WAIT_MS;
    return Math.min(IDLE_WAIT_MS, Math.max(0, (deadline - this.parts.clock.nowNs()) / 1e6));
  }
}

/**
 * The core's wiring on one thread: the IOAPIC and the MSI routes send on the APIC bus, and the
 * PIC's INT output is the BSP's LINT0 (virtual wire; x86-controllers.md §3.14). A rise also rings
 * the BSP's doorbell: LINT0's level may be stale when a listener on another thread lowered it
 * after this one raised it, and the halted BSP must wake for the new request.
 */
function coreWiring(clock: Clock, bus: ApicBus, localApics: readonly LocalApic[]): LegacyIrqCoreWiring {
  return {
    clock,
    ioapicSink: bus,
    sendMsi: (address, data) => bus.deliverMsi(lowHalf(address) >>> 0, highHalf(address) >>> 0, data),
    onPicOutput: (level) => {
      const bsp = localApics[0];
      bsp?.setLintLevel(0, level);
      if (level) bsp?.wake();
    },
  };
}

/** Whether the vCPU runs code that can take an external interrupt: runnable, or halted (the interrupt wakes it). */
function mayTakeInterrupts(apic: LocalApic): boolean {
  const state = apic.mpState();
  return state === MpState.Runnable || state === MpState.Halted;
}
