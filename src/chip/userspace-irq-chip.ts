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
 * Lines. Each controller pin's input is the OR of two sources, as KVM keeps per-source bits
 * (x86-controllers.md §5.4): the VMM's own `serviceIrq` and the level events. An edge event pulses
 * the pin when no source holds it high (a pulse on a high line is no edge: it coalesces). A level
 * event raises its source until the guest's EOI of the pin; then the chip lowers it and signals
 * the resample events of every level event on the GSIs routed to that pin (IOAPIC pins through the
 * IOAPIC's resample listener, PIC IRQs through the PIC's acknowledge listener). A pin that no
 * level event reaches any more (unregistered, or re-routed) loses its level-event source, as KVM
 * deasserts source 1 when the last resampler of a GSI goes (x86-controllers.md §5.8).
 *
 * Locks. The chip's line lock is outermost: line lock → PIC → IOAPIC → LAPIC
 * (docs/architecture.md). Controller listeners run after their controller's lock is released, so
 * they may take the line lock.
 *
 * Snapshots. `snapshot()` saves the line sources and counters, every controller, the routes, the
 * registered events' pending counts and this thread's deferred assertions (chip-snapshot.ts);
 * `restore` validates all of it, each controller's section in a scratch copy of that controller,
 * before it changes anything.
 *
 * Where this chip differs from crosvm's on purpose: a vCPU's interrupt-window request is set by
 * `injectInterrupts` on the vCPU's own thread, not by the thread that delivers (that one rings the
 * local APIC's doorbell); a halted vCPU with IF = 0 wakes only for NMI, SMI, INIT or SIPI, as in
 * KVM (crosvm makes it runnable on any accepted interrupt); a vCPU waiting for INIT or SIPI takes
 * no external interrupt; PIC interrupts reach whichever vCPU has LINT0 in ExtINT mode (the BSP
 * after RESET), as in KVM, rather than vCPU 0 by decree; the VMM's `serviceIrq` line is a source
 * of its own that an EOI does not lower (KVM's per-source lines; crosvm lowers the pin).
 *
 * Chip state words (Int32Array over a SharedArrayBuffer; words 0–1 are the line lock):
 *   2                   registry generation (irq-event-registry.ts)
 *   3 .. 18             line sources of PIC IRQ 0–15 (bit 0 serviceIrq, bit 1 level events)
 *   19 .. 42            line sources of IOAPIC pins 0–23
 *   43 .. 43+C-1        counters, in the order of `CHIP_COUNTER_NAMES`
 *   43+C .. +vcpus-1    kick flags, one per vCPU: 1 = the next wait returns 'interrupted'
 */

import { HostClock, type Clock } from '../base/clock.ts';
import { ErrorCode, IrqChipError, check, checkRange } from '../base/errors.ts';
import { highHalf, joinHalves, lowHalf } from '../base/integers.ts';
import { LOCK_WORDS, allocateStateWords, withLock } from '../base/shared-state.ts';
import { threadMayBlock } from '../base/thread.ts';
import type { MessagePort } from 'node:worker_threads';
import { EVENT_COUNTER_MAX, Event } from '../event/event.ts';
import type { IrqEdgeEvent, IrqLevelEvent } from '../event/irq-event.ts';
import { GsiRoutingTable } from '../routing/gsi-routing-table.ts';
import { IrqSourceChip, MAX_GSI_COUNT, PIC_PINS_PER_CHIP, defaultIrqRoutes, isaIrqOfPicPin, type IrqRoute, type IrqSource } from '../routing/irq-route.ts';
import { SharedRoutingTable, decodeRouteWords, encodeRouteWords, routeWordCount, type SharedRoutingTableDescriptor } from '../routing/shared-routing-table.ts';
import { IOAPIC_PIN_COUNT, Ioapic, IoapicVersion, type IoapicDescriptor } from '../x86/ioapic/ioapic.ts';
import { ApicBus, type ApicBusDescriptor } from '../x86/lapic/apic-bus.ts';
import { LocalApic, MpState, NO_INTERRUPT, type LocalApicDescriptor } from '../x86/lapic/local-apic.ts';
import { PIC_IRQS, PicPair, type PicPairDescriptor } from '../x86/pic/pic.ts';
import type { Bus } from './bus.ts';
import { placeControllersOnBuses } from './chip-bus-devices.ts';
import { countWords, decodeChipSnapshot, decodeWordSection, encodeChipSnapshot, encodeWordSection, scratchDescriptor } from './chip-snapshot.ts';
import type { IrqAllocator } from './irq-allocator.ts';
import type { IrqChip, IrqEventToken } from './irq-chip.ts';
import { IrqEventRegistry } from './irq-event-registry.ts';
import { mpStateFromApic, mpStateToApic, type IrqChipCap, type IrqEventIndex, type IrqEventSource, type MPState, type VcpuRunState } from './types.ts';
import type { Vcpu } from './vcpu.ts';

/** Line sources of a controller pin (KVM's irq source ids 0 and 1). */
const LINE_SOURCE_SERVICE_IRQ = 1;
const LINE_SOURCE_LEVEL_EVENTS = 2;

export const CHIP_COUNTER_NAMES = [
  /** Edge events serviced. */
  'edgeEventsServiced',
  /** Level events serviced (each asserts its line). */
  'levelEventsServiced',
  /** Event tokens serviced with nothing pending (a stale or duplicated wake-up). */
  'emptyEventServices',
  /** Edge pulses on a line some source held high: no edge, coalesced. */
  'coalescedPulses',
  /** MSIs sent by MSI routes. */
  'msisSent',
  /** Deasserts of an MSI route: nothing to send (crosvm sends one anyway; seed-apis.md §6.21). */
  'msiDeassertsIgnored',
  /** Resample events signalled after an EOI. */
  'resamplesSignalled',
  /** IOAPIC assertions deferred because another thread held the IOAPIC. */
  'delayedEvents',
  /** Deferred assertions dropped because their event was unregistered meanwhile. */
  'droppedDelayedEvents',
] as const;
export type ChipCounterName = (typeof CHIP_COUNTER_NAMES)[number];

const REGISTRY_GENERATION = LOCK_WORDS;
/** Line words: PIC IRQs first, then IOAPIC pins; a line's number is its offset from here. */
const PIC_LINES = LOCK_WORDS + 1;
const IOAPIC_LINES = PIC_LINES + PIC_IRQS;
const LINE_COUNT = PIC_IRQS + IOAPIC_PIN_COUNT;
const COUNTERS = IOAPIC_LINES + IOAPIC_PIN_COUNT;
const KICKS = COUNTERS + CHIP_COUNTER_NAMES.length;
const counterIndex = (name: ChipCounterName): number => COUNTERS + CHIP_COUNTER_NAMES.indexOf(name);
const ALL_LINE_SOURCES = LINE_SOURCE_SERVICE_IRQ | LINE_SOURCE_LEVEL_EVENTS;

/** Snapshot sections owned by the chip (chip-snapshot.ts); the controllers' carry their own kinds. */
const LINE_SECTION = 'LINE';
const ROUTE_SECTION = 'ROUT';
const EVENT_SECTION = 'EVNT';
const CHIP_SECTION_VERSION = 1;
/** Positions of the sections: LINE, PIC2, IOAP, ABUS, one LAPC per vCPU, then ROUT and EVNT. */
const Section = { Lines: 0, Pic: 1, Ioapic: 2, Bus: 3, FirstLocalApic: 4 } as const;
/** Sections besides the local APICs'. */
const FIXED_SECTIONS = 6;
/** EVNT: slot count and deferred count, then per slot: flags, GSI, trigger count (2 words), resample count (2 words); then the deferred indexes. */
const EVENT_HEADER_WORDS = 2;
const EVENT_SLOT_WORDS = 6;
const SLOT_OCCUPIED = 1;
const SLOT_LEVEL = 2;

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
export interface UserspaceIrqChipDescriptor {
  readonly kind: 'userspace-irq-chip';
  readonly vcpuCount: number;
  readonly tscDeadline: boolean;
  readonly state: SharedArrayBuffer;
  readonly pic: PicPairDescriptor;
  readonly ioapic: IoapicDescriptor;
  readonly bus: ApicBusDescriptor;
  readonly localApics: readonly LocalApicDescriptor[];
  readonly routes: SharedRoutingTableDescriptor;
  readonly registry: MessagePort;
}

/** The parts of a chip object; `tryClone` copies the reference, so clones share all of it. */
interface ChipParts {
  readonly words: Int32Array;
  readonly vcpuCount: number;
  readonly tscDeadline: boolean;
  readonly clock: Clock;
  readonly pic: PicPair;
  readonly ioapic: Ioapic;
  readonly bus: ApicBus;
  readonly localApics: readonly LocalApic[];
  readonly routes: SharedRoutingTable;
  readonly registry: IrqEventRegistry;
  /** Signalled while `delayed` holds work; this thread's (clones share it, views have their own). */
  readonly delayedToken: Event;
  /** Indexes of events whose IOAPIC assertion waits for `processDelayedIrqEvents` (this thread's). */
  readonly delayed: IrqEventIndex[];
}

/** What `restore` applies once every section has been validated. */
interface ValidatedSnapshot {
  readonly sections: readonly Uint8Array[];
  readonly lines: Int32Array;
  readonly routes: IrqRoute[];
  readonly events: Int32Array;
}

export class UserspaceIrqChip implements IrqChip {
  private constructor(private readonly parts: ChipParts) {}

  /** A new chip (the owner): controllers at RESET, the default routing table, no events. */
  static create(options: UserspaceIrqChipOptions): UserspaceIrqChip {
    checkRange(options.vcpuCount, 1, MAX_VCPUS, 'vCPU count');
    const version = options.ioapicVersion ?? IoapicVersion.V20;
    const clock = options.clock ?? new HostClock();
    const words = allocateStateWords(KICKS - LOCK_WORDS + options.vcpuCount);
    const pic = PicPair.create();
    const bus = ApicBus.create();
    const ioapic = Ioapic.create({ sink: bus, clock, version });
    const localApics = Array.from({ length: options.vcpuCount }, (_, index) =>
      LocalApic.create({
        busIndex: index,
        bsp: index === 0,
        clock,
        ...(options.tscHz === undefined ? {} : { tscHz: options.tscHz }),
        directedEoi: version === IoapicVersion.V20,
      }),
    );
    return UserspaceIrqChip.assemble(words, options.vcpuCount, options.tscHz !== undefined, clock, pic, ioapic, bus, localApics, {
      routes: SharedRoutingTable.create(IOAPIC_PIN_COUNT, defaultIrqRoutes()),
      registry: new IrqEventRegistry(words, REGISTRY_GENERATION, undefined),
    });
  }

  /** A view of a chip on this thread, from a descriptor made by the owner's `createView()`. */
  static fromDescriptor(descriptor: UserspaceIrqChipDescriptor, options: { readonly clock?: Clock } = {}): UserspaceIrqChip {
    const kind: unknown = descriptor.kind;
    check(kind === 'userspace-irq-chip', ErrorCode.EINVAL, 'not a userspace irqchip descriptor');
    const clock = options.clock ?? new HostClock();
    const words = new Int32Array(descriptor.state);
    const pic = PicPair.fromState(descriptor.pic);
    const bus = ApicBus.fromState(descriptor.bus);
    const ioapic = Ioapic.fromState(descriptor.ioapic, { sink: bus, clock });
    const localApics = descriptor.localApics.map((apic) => LocalApic.fromState(apic, { clock }));
    return UserspaceIrqChip.assemble(words, descriptor.vcpuCount, descriptor.tscDeadline, clock, pic, ioapic, bus, localApics, {
      routes: SharedRoutingTable.fromDescriptor(descriptor.routes),
      registry: new IrqEventRegistry(words, REGISTRY_GENERATION, descriptor.registry),
    });
  }

  /** Wires one thread's views of the controllers to each other and to this chip's listeners. */
  private static assemble(
    words: Int32Array,
    vcpuCount: number,
    tscDeadline: boolean,
    clock: Clock,
    pic: PicPair,
    ioapic: Ioapic,
    bus: ApicBus,
    localApics: readonly LocalApic[],
    shared: Pick<ChipParts, 'routes' | 'registry'>,
  ): UserspaceIrqChip {
    for (const apic of localApics) {
      apic.setIpiSink(bus);
      apic.setEoiListener(ioapic);
      apic.setExtIntController(pic);
      bus.addMember(apic);
    }
    const chip = new UserspaceIrqChip({ words, vcpuCount, tscDeadline, clock, pic, ioapic, bus, localApics, ...shared, delayedToken: Event.create(), delayed: [] });
    shared.registry.onSlotCleared = (index) => {
      chip.dropDelayed(index);
    };
    // The PIC's INT output is the BSP's LINT0 (virtual wire; x86-controllers.md §3.14). A rise
    // also rings the BSP's doorbell: LINT0's level may be stale when a listener on another thread
    // lowered it after this one raised it, and the halted BSP must wake for the new request.
    pic.setOutputListener((level) => {
      const bsp = localApics[0];
      bsp?.setLintLevel(0, level);
      if (level) bsp?.wake();
    });
    for (let irq = 0; irq < PIC_IRQS; irq++) {
      pic.setAckListener(irq, () => {
        chip.endLevelInterrupts(irq < PIC_PINS_PER_CHIP ? IrqSourceChip.PicPrimary : IrqSourceChip.PicSecondary, irq % PIC_PINS_PER_CHIP);
      });
    }
    ioapic.setResampleListener((pin) => {
      chip.endLevelInterrupts(IrqSourceChip.Ioapic, pin);
    });
    return chip;
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
      state: parts.words.buffer as SharedArrayBuffer,
      pic: parts.pic.descriptor(),
      ioapic: parts.ioapic.descriptor(),
      bus: parts.bus.descriptor(),
      localApics: parts.localApics.map((apic) => apic.descriptor()),
      routes: parts.routes.descriptor(),
      registry: parts.registry.openView(),
    };
  }

  // -------------------------------------------------------------------------------------------
  // The controllers, for the VMM and for observation.
  // -------------------------------------------------------------------------------------------

  get vcpuCount(): number {
    return this.parts.vcpuCount;
  }

  get pic(): PicPair {
    return this.parts.pic;
  }

  get ioapic(): Ioapic {
    return this.parts.ioapic;
  }

  get apicBus(): ApicBus {
    return this.parts.bus;
  }

  localApic(vcpuId: number): LocalApic {
    return this.apicOf(vcpuId);
  }

  /** The chip's own counters (the controllers keep theirs: `pic.counters()`, ...). */
  counters(): Readonly<Record<ChipCounterName, number>> {
    const result = {} as Record<ChipCounterName, number>;
    for (const name of CHIP_COUNTER_NAMES) result[name] = Atomics.load(this.parts.words, counterIndex(name)) >>> 0;
    return result;
  }

  /** The routes now in force (a copy). */
  routes(): IrqRoute[] {
    return this.parts.routes.current().routes();
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
    return this.registerEvent(irq, event.getTrigger(), undefined, source);
  }

  unregisterEdgeIrqEvent(irq: number, event: IrqEdgeEvent): void {
    this.unregisterEvent(irq, event.getTrigger());
  }

  registerLevelIrqEvent(irq: number, event: IrqLevelEvent, source: IrqEventSource): IrqEventIndex {
    return this.registerEvent(irq, event.getTrigger(), event.getResample(), source);
  }

  unregisterLevelIrqEvent(irq: number, event: IrqLevelEvent): void {
    this.unregisterEvent(irq, event.getTrigger());
  }

  routeIrq(route: IrqRoute): void {
    this.parts.routes.addRoute(route);
    this.rewireLevelPins();
  }

  setIrqRoutes(routes: readonly IrqRoute[]): void {
    this.parts.routes.setRoutes(routes);
    this.rewireLevelPins();
  }

  irqEventTokens(): IrqEventToken[] {
    return this.parts.registry.entries().map(([index, entry]) => ({ index, source: entry.source, event: entry.trigger }));
  }

  // -------------------------------------------------------------------------------------------
  // IrqChip: raising interrupts
  // -------------------------------------------------------------------------------------------

  serviceIrq(irq: number, level: boolean): number {
    checkGsi(irq);
    check(typeof level === 'boolean', ErrorCode.EINVAL, 'level must be a boolean');
    const sources = this.parts.routes.current().sources(irq);
    let status = -1;
    for (const source of sources) {
      const result =
        source.kind === 'msi'
          ? this.sendMsi(source, level)
          : (withLock(this.parts.words, () => this.driveLine(lineOf(source.chip, source.pin), LINE_SOURCE_SERVICE_IRQ, level)) ?? -1);
      // KVM's combination (x86-controllers.md §5.5): negative results are ignored, the rest summed.
      if (result >= 0) status = Math.max(status, 0) + result;
    }
    return status;
  }

  /** Nothing happens for an empty or never-used slot: its token may fire after it was unregistered. */
  serviceIrqEvent(index: IrqEventIndex): void {
    checkRange(index, 0, Number.MAX_SAFE_INTEGER, 'event index');
    const entry = this.parts.registry.slot(index);
    if (entry === undefined) return;
    if (entry.trigger.tryRead() === 0n) {
      this.count('emptyEventServices');
      return;
    }
    this.count(entry.resample === undefined ? 'edgeEventsServiced' : 'levelEventsServiced');
    this.assertEvent(index, entry.gsi, entry.resample !== undefined, false);
  }

  processDelayedIrqEvents(): void {
    const { delayed, registry, delayedToken } = this.parts;
    registry.sync();
    for (const index of delayed.splice(0)) {
      // Deferred work of an unregistered event was dropped when its slot was cleared.
      const entry = registry.slot(index);
      if (entry !== undefined) this.assertEvent(index, entry.gsi, entry.resample !== undefined, true);
    }
    if (delayed.length === 0) delayedToken.tryRead();
  }

  /** Drops this thread's deferred assertions for a slot whose event went (seed-apis.md §2.5 [bug?]). */
  private dropDelayed(index: IrqEventIndex): void {
    const { delayed } = this.parts;
    for (let at = delayed.indexOf(index); at >= 0; at = delayed.indexOf(index)) {
      delayed.splice(at, 1);
      this.count('droppedDelayedEvents');
    }
  }

  irqDelayedEventToken(): Event {
    return this.parts.delayedToken;
  }

  broadcastEoi(vector: number): void {
    checkRange(vector, 0, 0xff, 'EOI vector');
    this.parts.ioapic.endOfInterrupt(vector);
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
    const { words, localApics } = this.parts;
    localApics.forEach((apic, index) => {
      Atomics.store(words, KICKS + index, 1);
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
    const { pic, ioapic, localApics } = this.parts;
    placeControllersOnBuses(pic, ioapic, localApics, ioBus, mmioBus);
    resources.advanceTo(IOAPIC_PIN_COUNT);
  }

  checkCapability(cap: IrqChipCap): boolean {
    switch (cap) {
      case 'tsc-deadline-timer':
        return this.parts.tscDeadline;
      case 'x2apic':
      case 'mp-state-get-set':
        return true;
    }
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
    const { words, pic, ioapic, bus, localApics } = this.parts;
    return encodeChipSnapshot([
      encodeWordSection(LINE_SECTION, CHIP_SECTION_VERSION, withLock(this.parts.words, () => words.slice(PIC_LINES, KICKS))),
      pic.snapshot(),
      ioapic.snapshot(),
      bus.snapshot(),
      ...localApics.map((apic) => apic.snapshot()),
      encodeWordSection(ROUTE_SECTION, CHIP_SECTION_VERSION, this.routeWords()),
      encodeWordSection(EVENT_SECTION, CHIP_SECTION_VERSION, this.eventWords()),
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
    const ioapicDeadline = this.parts.ioapic.nextDeadlineNs();
    if (ioapicDeadline !== undefined && ioapicDeadline <= this.parts.clock.nowNs()) this.parts.ioapic.runDelayedWork();
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

  private registerEvent(gsi: number, trigger: Event, resample: Event | undefined, source: IrqEventSource): IrqEventIndex {
    checkGsi(gsi);
    const index = this.parts.registry.register(gsi, trigger, resample, source);
    if (resample !== undefined) this.rewireLevelPins();
    return index;
  }

  private unregisterEvent(gsi: number, trigger: Event): void {
    if (this.parts.registry.unregister(gsi, trigger)) this.rewireLevelPins();
  }

  /**
   * Brings the pins in line with the level events and the routes: an IOAPIC pin is resampled iff
   * a level event's GSI is routed to it (the IOAPIC keeps this in shared state), and a line that
   * no level event reaches any more drops its level-event source, which nothing would ever lower
   * otherwise (a level IOAPIC entry would then re-deliver at every EOI).
   */
  private rewireLevelPins(): void {
    const wired = this.levelWiredLines();
    const { ioapic } = this.parts;
    for (let pin = 0; pin < IOAPIC_PIN_COUNT; pin++) {
      const resampled = wired[PIC_IRQS + pin] === 1;
      if (ioapic.isPinResampled(pin) !== resampled) ioapic.setPinResampled(pin, resampled);
    }
    withLock(this.parts.words, () => {
      for (let line = 0; line < LINE_COUNT; line++) {
        const held = ((this.parts.words[PIC_LINES + line] ?? 0) & LINE_SOURCE_LEVEL_EVENTS) !== 0;
        if (held && wired[line] === 0) this.driveLine(line, LINE_SOURCE_LEVEL_EVENTS, false);
      }
    });
  }

  /** Per line: 1 if a GSI with level events is routed to it. */
  private levelWiredLines(): Uint8Array {
    const routes = this.parts.routes.current();
    const wired = new Uint8Array(LINE_COUNT);
    for (const gsi of this.parts.registry.levelGsis()) {
      for (const source of routes.sources(gsi)) {
        if (source.kind === 'irqchip') wired[lineOf(source.chip, source.pin)] = 1;
      }
    }
    return wired;
  }

  /**
   * Asserts an event's GSI on every route: a level event raises its source and holds it; an edge
   * event pulses. With `ioapicOnly` (a retry of a deferred assertion) only IOAPIC routes are
   * touched, the others having been done the first time.
   */
  private assertEvent(index: IrqEventIndex, gsi: number, level: boolean, ioapicOnly: boolean): void {
    for (const source of this.parts.routes.current().sources(gsi)) {
      if (source.kind === 'msi') {
        if (!ioapicOnly) this.sendMsi(source, true);
        continue;
      }
      if (ioapicOnly && source.chip !== IrqSourceChip.Ioapic) continue;
      const line = lineOf(source.chip, source.pin);
      const done = withLock(this.parts.words, () => (level ? this.driveLine(line, LINE_SOURCE_LEVEL_EVENTS, true, true) : this.pulseLine(line)));
      if (done === undefined) this.defer(index);
    }
  }

  private defer(index: IrqEventIndex): void {
    this.parts.delayed.push(index);
    this.count('delayedEvents');
    this.parts.delayedToken.signal();
  }

  /**
   * Sets or clears one source of a line and drives the line with the OR of its sources. With
   * `tryIoapic`, an IOAPIC held by another thread makes this return undefined, having changed
   * nothing. Call with the line lock held.
   */
  private driveLine(line: number, source: number, level: boolean, tryIoapic = false): number | undefined {
    const { words } = this.parts;
    const at = PIC_LINES + line;
    const before = words[at] ?? 0;
    const after = level ? before | source : before & ~source;
    const result = this.setLine(line, after !== 0, tryIoapic);
    if (result !== undefined) words[at] = after;
    return result;
  }

  /** An edge: high then low, unless some source holds the line high (then no edge: coalesced). */
  private pulseLine(line: number): number | undefined {
    if ((this.parts.words[PIC_LINES + line] ?? 0) !== 0) {
      this.count('coalescedPulses');
      return 0;
    }
    const result = this.setLine(line, true, true);
    if (result !== undefined) this.setLine(line, false, false);
    return result;
  }

  private setLine(line: number, level: boolean, tryIoapic: boolean): number | undefined {
    if (line < PIC_IRQS) return this.parts.pic.setIrq(line, level);
    const pin = line - PIC_IRQS;
    return tryIoapic ? this.parts.ioapic.trySetIrq(pin, level) : this.parts.ioapic.setIrq(pin, level);
  }

  /** An MSI route: a message on assert; nothing on deassert (seed-apis.md §6.21). */
  private sendMsi(source: Extract<IrqSource, { kind: 'msi' }>, level: boolean): number {
    if (!level) {
      this.count('msiDeassertsIgnored');
      return -1;
    }
    this.count('msisSent');
    return this.parts.bus.deliverMsi(lowHalf(source.address) >>> 0, highHalf(source.address) >>> 0, source.data);
  }

  /**
   * A controller acknowledged a pin (the guest's EOI; for the PIC also AEOI, poll, ICW1): lower
   * the level-event source of every GSI routed to it that has level events, and signal their
   * resample events so each device re-checks and re-triggers if it still needs service.
   */
  private endLevelInterrupts(chip: IrqSourceChip, pin: number): void {
    const { routes, registry } = this.parts;
    const table = routes.current();
    for (const gsi of table.gsisOfPin(chip, pin)) {
      const levelEvents = registry.levelEventsOn(gsi);
      if (levelEvents.length === 0) continue;
      withLock(this.parts.words, () => {
        for (const source of table.sources(gsi)) {
          if (source.kind === 'irqchip') this.driveLine(lineOf(source.chip, source.pin), LINE_SOURCE_LEVEL_EVENTS, false);
        }
      });
      for (const event of levelEvents) {
        event.resample?.signal();
        this.count('resamplesSignalled');
      }
    }
  }

  private routeWords(): Int32Array {
    const routes = this.routes();
    const words = new Int32Array(routeWordCount(routes.length));
    encodeRouteWords(routes, words, 0);
    return words;
  }

  /** EVNT: slot count, deferred count, per slot flags, GSI and the two counts, then the deferred indexes. */
  private eventWords(): Int32Array {
    const { registry, delayed } = this.parts;
    const slotCount = registry.slotCount();
    const words = new Int32Array(EVENT_HEADER_WORDS + slotCount * EVENT_SLOT_WORDS + delayed.length);
    words[0] = slotCount;
    words[1] = delayed.length;
    for (const [index, entry] of registry.entries()) {
      const at = EVENT_HEADER_WORDS + index * EVENT_SLOT_WORDS;
      words[at] = SLOT_OCCUPIED | (entry.resample === undefined ? 0 : SLOT_LEVEL);
      words[at + 1] = entry.gsi;
      words.set(countWords(entry.trigger.readCount()), at + 2);
      words.set(countWords(entry.resample?.readCount() ?? 0n), at + 4);
    }
    words.set(delayed, EVENT_HEADER_WORDS + slotCount * EVENT_SLOT_WORDS);
    return words;
  }

  /** Decodes and checks every section; throws EINVAL, having changed nothing, at the first problem. */
  private validateSnapshot(bytes: Uint8Array): ValidatedSnapshot {
    const { pic, ioapic, bus, localApics, clock, vcpuCount } = this.parts;
    const sections = decodeChipSnapshot(bytes, FIXED_SECTIONS + vcpuCount);
    const section = (index: number): Uint8Array => sections[index] ?? new Uint8Array(0);
    const lines = validateLineWords(decodeWordSection(section(Section.Lines), LINE_SECTION, CHIP_SECTION_VERSION));
    PicPair.fromState(scratchDescriptor(pic.descriptor())).restore(section(Section.Pic));
    Ioapic.fromState(scratchDescriptor(ioapic.descriptor()), { sink: { deliver: () => -1 }, clock }).restore(section(Section.Ioapic));
    ApicBus.fromState(scratchDescriptor(bus.descriptor())).restore(section(Section.Bus));
    localApics.forEach((apic, index) => {
      LocalApic.fromState(scratchDescriptor(apic.descriptor()), { clock }).restore(section(Section.FirstLocalApic + index));
    });
    const routes = decodeRouteWords(decodeWordSection(section(Section.FirstLocalApic + vcpuCount), ROUTE_SECTION, CHIP_SECTION_VERSION), 0);
    // Throws EINVAL for a route the table would refuse.
    new GsiRoutingTable(IOAPIC_PIN_COUNT, routes);
    const events = this.validateEventWords(decodeWordSection(section(Section.FirstLocalApic + vcpuCount + 1), EVENT_SECTION, CHIP_SECTION_VERSION));
    return { sections, lines, routes, events };
  }

  /** The EVNT words must describe this chip's registration table: same slots, GSIs and kinds. */
  private validateEventWords(words: Int32Array): Int32Array {
    const { registry } = this.parts;
    const slotCount = registry.slotCount();
    const delayedCount = words[1] ?? 0;
    if (words[0] !== slotCount || delayedCount < 0 || words.length !== EVENT_HEADER_WORDS + slotCount * EVENT_SLOT_WORDS + delayedCount) {
      rejectSnapshot(`it has ${String(words[0])} event slots, this chip ${slotCount}`);
    }
    for (let index = 0; index < slotCount; index++) {
      const at = EVENT_HEADER_WORDS + index * EVENT_SLOT_WORDS;
      const entry = registry.slot(index);
      const flags = entry === undefined ? 0 : SLOT_OCCUPIED | (entry.resample === undefined ? 0 : SLOT_LEVEL);
      if (words[at] !== flags || words[at + 1] !== (entry?.gsi ?? 0)) rejectSnapshot(`event slot ${index} is registered differently`);
      const trigger = joinHalves(words[at + 2] ?? 0, words[at + 3] ?? 0);
      const resample = joinHalves(words[at + 4] ?? 0, words[at + 5] ?? 0);
      if (trigger > EVENT_COUNTER_MAX || resample > EVENT_COUNTER_MAX) rejectSnapshot(`event slot ${index} has an impossible count`);
      if ((entry === undefined && trigger !== 0n) || (entry?.resample === undefined && resample !== 0n)) {
        rejectSnapshot(`event slot ${index} has a count for an event it does not have`);
      }
    }
    for (const index of words.subarray(EVENT_HEADER_WORDS + slotCount * EVENT_SLOT_WORDS)) {
      if (index < 0 || index >= slotCount) rejectSnapshot(`deferred assertion of event slot ${index}, which does not exist`);
    }
    return words;
  }

  /** Applies a validated snapshot; the controllers re-check their sections, which cannot fail now. */
  private applySnapshot(snapshot: ValidatedSnapshot): void {
    const { words, pic, ioapic, bus, localApics, routes } = this.parts;
    const section = (index: number): Uint8Array => snapshot.sections[index] ?? new Uint8Array(0);
    withLock(this.parts.words, () => {
      words.set(snapshot.lines, PIC_LINES);
    });
    // The PIC first: its output is the BSP's LINT0, whose level the BSP's own section then sets.
    pic.restore(section(Section.Pic));
    ioapic.restore(section(Section.Ioapic));
    bus.restore(section(Section.Bus));
    localApics.forEach((apic, index) => {
      apic.restore(section(Section.FirstLocalApic + index));
    });
    routes.setRoutes(snapshot.routes);
    this.restoreEvents(snapshot.events);
    this.rewireLevelPins();
  }

  private restoreEvents(words: Int32Array): void {
    const { registry, delayed, delayedToken } = this.parts;
    const slotCount = words[0] ?? 0;
    for (const [index, entry] of registry.entries()) {
      const at = EVENT_HEADER_WORDS + index * EVENT_SLOT_WORDS;
      entry.trigger.writeCount(joinHalves(words[at + 2] ?? 0, words[at + 3] ?? 0));
      entry.resample?.writeCount(joinHalves(words[at + 4] ?? 0, words[at + 5] ?? 0));
    }
    delayed.length = 0;
    delayed.push(...words.subarray(EVENT_HEADER_WORDS + slotCount * EVENT_SLOT_WORDS));
    if (delayed.length > 0) delayedToken.signal();
    else delayedToken.tryRead();
  }

  private count(name: ChipCounterName): void {
    Atomics.add(this.parts.words, counterIndex(name), 1);
  }

  /** The vCPU's state for a wait: 'interrupted' (a kick, consumed), 'runnable', or undefined to sleep on. */
  private checkRunnable(vcpu: Vcpu, apic: LocalApic): VcpuRunState | undefined {
    if (Atomics.exchange(this.parts.words, KICKS + vcpu.id, 0) !== 0) return 'interrupted';
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

/** The chip's number for a controller pin: ISA IRQ 0–15 for the PIC, 16 + pin for the IOAPIC. */
function lineOf(chip: IrqSourceChip, pin: number): number {
  return chip === IrqSourceChip.Ioapic ? PIC_IRQS + pin : isaIrqOfPicPin(chip, pin);
}

/** A GSI the routing table can hold (KVM_MAX_IRQ_ROUTES); any other can never be routed. */
function checkGsi(gsi: number): void {
  checkRange(gsi, 0, MAX_GSI_COUNT - 1, 'GSI');
}

/** Whether the vCPU runs code that can take an external interrupt: runnable, or halted (the interrupt wakes it). */
function mayTakeInterrupts(apic: LocalApic): boolean {
  const state = apic.mpState();
  return state === MpState.Runnable || state === MpState.Halted;
}

function rejectSnapshot(why: string): never {
  throw new IrqChipError(ErrorCode.EINVAL, `chip snapshot rejected: ${why}`);
}

/** LINE: a source word per line holding only the two source bits, then the counters. */
function validateLineWords(words: Int32Array): Int32Array {
  if (words.length !== KICKS - PIC_LINES) rejectSnapshot(`LINE section of ${words.length} words, expected ${KICKS - PIC_LINES}`);
  for (let line = 0; line < LINE_COUNT; line++) {
    if (((words[line] ?? 0) & ~ALL_LINE_SOURCES) !== 0) rejectSnapshot(`line ${line} has unknown source bits`);
  }
  return words;
}
