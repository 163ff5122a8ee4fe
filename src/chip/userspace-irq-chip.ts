/**
 * `UserspaceIrqChip`: the `IrqChip` in which the 8259A pair, the IOAPIC and every local APIC are
 * ours (crosvm `UserspaceIrqChip`; seed-apis.md §2.4–2.7), usable across worker threads.
 *
 * Threads. The chip object a VMM creates is the *owner*: devices register their events with it and
 * it services them. `createView()` gives a descriptor from which another thread (a vCPU worker, a
 * device worker) builds a *view*: the same controllers (their state is shared memory), the same
 * routing table (shared, any thread may change it) and the same event table (sent by the owner,
 * synchronised before each use; irq-event-registry.ts). A view does everything but register
 * events: inject, take EOIs, signal resamples, halt and wait, service events and lines.
 *
 * Lines. Each controller pin's input is the OR of two sources, as KVM keeps per-source bits
 * (x86-controllers.md §5.4): the VMM's own `serviceIrq` and the level events. An edge event pulses
 * the pin when no source holds it high (a pulse on a high line is no edge: it coalesces). A level
 * event raises its source until the guest's EOI of the pin; then the chip lowers it and signals
 * the resample events of every level event on the GSIs routed to that pin (IOAPIC pins through the
 * IOAPIC's resample listener, PIC IRQs through the PIC's acknowledge listener).
 *
 * Locks. The chip's line lock is outermost: line lock → PIC → IOAPIC → LAPIC
 * (docs/architecture.md). Controller listeners run after their controller's lock is released, so
 * they may take the line lock.
 *
 * Chip state words (Int32Array over a SharedArrayBuffer; words 0–1 are the line lock):
 *   2                   registry generation (irq-event-registry.ts)
 *   3 .. 18             PIC IRQ 0–15 line sources (bit 0 serviceIrq, bit 1 level events)
 *   19 .. 42            IOAPIC pin 0–23 line sources
 *   43 .. 43+C-1        counters, in the order of `CHIP_COUNTER_NAMES`
 *   43+C .. +vcpus-1    kick flags, one per vCPU: 1 = the next wait returns 'interrupted'
 */

import { HostClock, type Clock } from '../base/clock.ts';
import { ErrorCode, IrqChipError, check, checkRange } from '../base/errors.ts';
import { LOCK_WORDS, acquireLock, allocateStateWords, releaseLock } from '../base/shared-state.ts';
import { threadMayBlock } from '../base/thread.ts';
import type { MessagePort } from 'node:worker_threads';
import { Event, type EventDescriptor } from '../event/event.ts';
import type { IrqEdgeEvent, IrqLevelEvent } from '../event/irq-event.ts';
import { IrqSourceChip, PIC_PINS_PER_CHIP, defaultIrqRoutes, isaIrqOfPicPin, type IrqRoute, type IrqSource } from '../routing/irq-route.ts';
import { SharedRoutingTable, type SharedRoutingTableDescriptor } from '../routing/shared-routing-table.ts';
import { IOAPIC_PIN_COUNT, Ioapic, IoapicVersion, type IoapicDescriptor } from '../x86/ioapic/ioapic.ts';
import { ApicBus, type ApicBusDescriptor } from '../x86/lapic/apic-bus.ts';
import { LocalApic, MpState, NO_INTERRUPT, type LocalApicDescriptor } from '../x86/lapic/local-apic.ts';
import { PIC_IRQS, PicPair, type PicPairDescriptor } from '../x86/pic/pic.ts';
import type { Bus } from './bus.ts';
import { placeControllersOnBuses } from './chip-bus-devices.ts';
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
const PIC_LINES = LOCK_WORDS + 1;
const IOAPIC_LINES = PIC_LINES + PIC_IRQS;
const COUNTERS = IOAPIC_LINES + IOAPIC_PIN_COUNT;
const KICKS = COUNTERS + CHIP_COUNTER_NAMES.length;
const counterIndex = (name: ChipCounterName): number => COUNTERS + CHIP_COUNTER_NAMES.indexOf(name);

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
  readonly delayedToken: EventDescriptor;
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
  readonly delayedToken: Event;
  /** Indexes of events whose IOAPIC assertion waits for `processDelayedIrqEvents` (this thread's). */
  readonly delayed: IrqEventIndex[];
  readonly vcpus: (Vcpu | undefined)[];
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
      delayedToken: Event.create(),
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
      delayedToken: Event.fromDescriptor(descriptor.delayedToken),
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
    shared: Pick<ChipParts, 'routes' | 'registry' | 'delayedToken'>,
  ): UserspaceIrqChip {
    for (const apic of localApics) {
      apic.setIpiSink(bus);
      apic.setEoiListener(ioapic);
      apic.setExtIntController(pic);
      bus.addMember(apic);
    }
    const chip = new UserspaceIrqChip({ words, vcpuCount, tscDeadline, clock, pic, ioapic, bus, localApics, ...shared, delayed: [], vcpus: [] });
    // The PIC's INT output is the BSP's LINT0 (virtual wire; x86-controllers.md §3.14).
    pic.setOutputListener((level) => {
      localApics[0]?.setLintLevel(0, level);
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
      delayedToken: parts.delayedToken.descriptor(),
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

  addVcpu(vcpuId: number, vcpu: Vcpu): void {
    this.apicOf(vcpuId);
    check(vcpu.id === vcpuId, ErrorCode.EINVAL, `vCPU ${vcpu.id} added as vCPU ${vcpuId}`);
    this.parts.vcpus[vcpuId] = vcpu;
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
    this.updateResampledPins();
  }

  setIrqRoutes(routes: readonly IrqRoute[]): void {
    this.parts.routes.setRoutes(routes);
    this.updateResampledPins();
  }

  irqEventTokens(): IrqEventToken[] {
    return this.parts.registry.entries().map(([index, entry]) => ({ index, source: entry.source, event: entry.trigger }));
  }

  // -------------------------------------------------------------------------------------------
  // IrqChip: raising interrupts
  // -------------------------------------------------------------------------------------------

  serviceIrq(irq: number, level: boolean): number {
    checkRange(irq, 0, Number.MAX_SAFE_INTEGER, 'GSI');
    check(typeof level === 'boolean', ErrorCode.EINVAL, 'level must be a boolean');
    const sources = this.parts.routes.current().sources(irq);
    let status = -1;
    for (const source of sources) {
      const result =
        source.kind === 'msi'
          ? this.sendMsi(source, level)
          : (this.withLineLock(() => this.driveLine(source.chip, source.pin, LINE_SOURCE_SERVICE_IRQ, level)) ?? -1);
      // KVM's combination (x86-controllers.md §5.5): negative results are ignored, the rest summed.
      if (result >= 0) status = Math.max(status, 0) + result;
    }
    return status;
  }

  serviceIrqEvent(index: IrqEventIndex): void {
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
    const pending = delayed.splice(0);
    for (const index of pending) {
      const entry = registry.slot(index);
      if (entry === undefined) {
        this.count('droppedDelayedEvents');
        continue;
      }
      this.assertEvent(index, entry.gsi, entry.resample !== undefined, true);
    }
    if (delayed.length === 0) delayedToken.tryRead();
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
    // At most one external interrupt per entry (seed-apis.md §6.28).
    if (vcpu.readyForInterrupt()) {
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
    checkRange(gsi, 0, Number.MAX_SAFE_INTEGER, 'GSI');
    const index = this.parts.registry.register(gsi, trigger, resample, source);
    if (resample !== undefined) this.updateResampledPins();
    return index;
  }

  private unregisterEvent(gsi: number, trigger: Event): void {
    if (this.parts.registry.unregister(gsi, trigger)) this.updateResampledPins();
  }

  /** An IOAPIC pin is resampled iff a level event's GSI is routed to it (the IOAPIC keeps this in shared state). */
  private updateResampledPins(): void {
    const routes = this.parts.routes.current();
    let resampled = 0;
    for (const gsi of this.parts.registry.levelGsis()) {
      for (const source of routes.sources(gsi)) {
        if (source.kind === 'irqchip' && source.chip === IrqSourceChip.Ioapic) resampled |= 1 << source.pin;
      }
    }
    for (let pin = 0; pin < IOAPIC_PIN_COUNT; pin++) {
      const wanted = (resampled & (1 << pin)) !== 0;
      if (this.parts.ioapic.isPinResampled(pin) !== wanted) this.parts.ioapic.setPinResampled(pin, wanted);
    }
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
      const done = this.withLineLock(() =>
        level ? this.driveLine(source.chip, source.pin, LINE_SOURCE_LEVEL_EVENTS, true, true) : this.pulseLine(source.chip, source.pin),
      );
      if (done === undefined) this.defer(index);
    }
  }

  private defer(index: IrqEventIndex): void {
    this.parts.delayed.push(index);
    this.count('delayedEvents');
    this.parts.delayedToken.signal();
  }

  /**
   * Sets or clears one source of a pin and drives the pin with the OR of its sources. With
   * `tryIoapic`, an IOAPIC held by another thread makes this return undefined, having changed
   * nothing. Call with the line lock held.
   */
  private driveLine(chip: IrqSourceChip, pin: number, source: number, level: boolean, tryIoapic = false): number | undefined {
    const { words } = this.parts;
    const at = this.lineWord(chip, pin);
    const before = words[at] ?? 0;
    const after = level ? before | source : before & ~source;
    const result = this.setPin(chip, pin, after !== 0, tryIoapic);
    if (result !== undefined) words[at] = after;
    return result;
  }

  /** An edge: high then low, unless some source holds the line high (then no edge: coalesced). */
  private pulseLine(chip: IrqSourceChip, pin: number): number | undefined {
    if ((this.parts.words[this.lineWord(chip, pin)] ?? 0) !== 0) {
      this.count('coalescedPulses');
      return 0;
    }
    const result = this.setPin(chip, pin, true, true);
    if (result !== undefined) this.setPin(chip, pin, false, false);
    return result;
  }

  private setPin(chip: IrqSourceChip, pin: number, level: boolean, tryIoapic: boolean): number | undefined {
    if (chip !== IrqSourceChip.Ioapic) return this.parts.pic.setIrq(isaIrqOfPicPin(chip, pin), level);
    return tryIoapic ? this.parts.ioapic.trySetIrq(pin, level) : this.parts.ioapic.setIrq(pin, level);
  }

  private lineWord(chip: IrqSourceChip, pin: number): number {
    return chip === IrqSourceChip.Ioapic ? IOAPIC_LINES + pin : PIC_LINES + isaIrqOfPicPin(chip, pin);
  }

  /** An MSI route: a message on assert; nothing on deassert (seed-apis.md §6.21). */
  private sendMsi(source: Extract<IrqSource, { kind: 'msi' }>, level: boolean): number {
    if (!level) {
      this.count('msiDeassertsIgnored');
      return -1;
    }
    this.count('msisSent');
    return this.parts.bus.deliverMsi(Number(source.address & 0xffffffffn), Number(source.address >> 32n), source.data);
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
      this.withLineLock(() => {
        for (const source of table.sources(gsi)) {
          if (source.kind === 'irqchip') this.driveLine(source.chip, source.pin, LINE_SOURCE_LEVEL_EVENTS, false);
        }
      });
      for (const event of levelEvents) {
        event.resample?.signal();
        this.count('resamplesSignalled');
      }
    }
  }

  private withLineLock<T>(body: () => T): T {
    acquireLock(this.parts.words);
    try {
      return body();
    } finally {
      releaseLock(this.parts.words);
    }
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
