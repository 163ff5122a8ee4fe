/**
 * `LegacyIrqCore`: the device-facing half of a chip that models the 8259A pair and the IOAPIC
 * itself, shared by `UserspaceIrqChip` (local APICs ours too) and `KvmSplitIrqChip` (local APICs
 * in KVM). It owns the controllers' input lines, the 8259A pair, the IOAPIC, the GSI routing
 * table, the registered events and the deferred assertions; a chip adds the local APIC side.
 *
 * What differs between the chips is where messages go, so the core takes it as wiring: the
 * IOAPIC's `InterruptMessageSink` and the sender MSI routes use (the APIC bus for the userspace
 * chip; KVM for the split chip), and what the PIC's INT output drives (the BSP's LINT0, or a
 * KVM_INTERRUPT on vCPU 0).
 *
 * Threads. The core a chip creates is the *owner*: events are registered with it. `viewDescriptor`
 * gives what another thread needs to build a *view* with `fromDescriptor`: the same controllers
 * (shared memory), routes (`SharedRoutingTable`) and event table (sent by the owner, synchronised
 * before each use; irq-event-registry.ts). Deferred assertions are per core object, so each view
 * has its own delayed token.
 *
 * Lines. Each controller pin's input is the OR of two sources, as KVM keeps per-source bits
 * (x86-controllers.md §5.4): the VMM's own `serviceIrq` and the level events. An edge event pulses
 * the pin when no source holds it high (a pulse on a high line is no edge: it coalesces). A level
 * event raises its source until the guest's EOI of the pin; then the core lowers it and signals
 * the resample events of every level event on the GSIs routed to that pin (IOAPIC pins through the
 * IOAPIC's resample listener, PIC IRQs through the PIC's acknowledge listener). A pin that no
 * level event reaches any more (unregistered, or re-routed) loses its level-event source, as KVM
 * deasserts source 1 when the last resampler of a GSI goes (x86-controllers.md §5.8).
 *
 * Locks. The line lock (words 0–1) is outermost: line lock → PIC → IOAPIC → LAPIC
 * (docs/architecture.md). Controller listeners run after their controller's lock is released, so
 * they may take the line lock.
 *
 * Snapshots. The core's sections are 'LINE' (line sources and counters), the PIC's, the IOAPIC's,
 * 'ROUT' (routes) and 'EVNT' (pending counts of registered events and this view's deferred
 * assertions); a chip places them in its own container (chip-snapshot.ts) beside its sections.
 *
 * State words (Int32Array over a SharedArrayBuffer; words 0–1 are the line lock):
 *   2                   registry generation (irq-event-registry.ts)
 *   3 .. 18             line sources of PIC IRQ 0–15 (bit 0 serviceIrq, bit 1 level events)
 *   19 .. 42            line sources of IOAPIC pins 0–23
 *   43 .. 43+C-1        counters, in the order of `CHIP_COUNTER_NAMES`
 *   43+C ...            the chip's own words (`extraWords` of them, from `extraWordsAt`)
 */

import type { Clock } from '../base/clock.ts';
import { ErrorCode, IrqChipError, check, checkRange } from '../base/errors.ts';
import { joinHalves } from '../base/integers.ts';
import { LOCK_WORDS, allocateStateWords, withLock } from '../base/shared-state.ts';
import type { MessagePort } from 'node:worker_threads';
import { EVENT_COUNTER_MAX, Event } from '../event/event.ts';
import { GsiRoutingTable } from '../routing/gsi-routing-table.ts';
import { IrqSourceChip, MAX_GSI_COUNT, PIC_PINS_PER_CHIP, defaultIrqRoutes, isaIrqOfPicPin, type IrqRoute, type IrqSource } from '../routing/irq-route.ts';
import { SharedRoutingTable, decodeRouteWords, encodeRouteWords, routeWordCount, type SharedRoutingTableDescriptor } from '../routing/shared-routing-table.ts';
import type { InterruptMessageSink } from '../x86/interrupt-message.ts';
import { IOAPIC_PIN_COUNT, Ioapic, type IoapicDescriptor, type IoapicVersion } from '../x86/ioapic/ioapic.ts';
import { PIC_IRQS, PicPair, type PicPairDescriptor } from '../x86/pic/pic.ts';
import { countWords, decodeWordSection, encodeWordSection, scratchDescriptor } from './chip-snapshot.ts';
import type { IrqEventToken } from './irq-chip.ts';
import { IrqEventRegistry } from './irq-event-registry.ts';
import type { IrqEventIndex, IrqEventSource } from './types.ts';

/** Line sources of a controller pin (KVM's irq source ids 0 and 1). */
const LINE_SOURCE_SERVICE_IRQ = 1;
const LINE_SOURCE_LEVEL_EVENTS = 2;
const ALL_LINE_SOURCES = LINE_SOURCE_SERVICE_IRQ | LINE_SOURCE_LEVEL_EVENTS;

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
const CORE_WORDS_END = COUNTERS + CHIP_COUNTER_NAMES.length;
/** The LINE section: the line words and the counters. */
const LINE_SECTION_WORDS = CORE_WORDS_END - PIC_LINES;
const counterIndex = (name: ChipCounterName): number => COUNTERS + CHIP_COUNTER_NAMES.indexOf(name);

/** Snapshot sections owned by the core (chip-snapshot.ts); the controllers' carry their own kinds. */
const LINE_SECTION = 'LINE';
const ROUTE_SECTION = 'ROUT';
const EVENT_SECTION = 'EVNT';
const CORE_SECTION_VERSION = 1;
/** EVNT: slot count and deferred count, then per slot: flags, GSI, trigger count (2 words), resample count (2 words); then the deferred indexes. */
const EVENT_HEADER_WORDS = 2;
const EVENT_SLOT_WORDS = 6;
const SLOT_OCCUPIED = 1;
const SLOT_LEVEL = 2;

/** Sends an MSI route's message (address a u64, data a u32); returns KVM's status convention (x86-controllers.md §0). */
export type MsiSender = (address: bigint, data: number) => number;

/** Where the core's messages and the PIC's output go, per view (callbacks are not shared state). */
export interface LegacyIrqCoreWiring {
  /** Time for the IOAPIC's storm limiter. */
  readonly clock: Clock;
  /** The IOAPIC's messages: called with the IOAPIC lock held, so it must not call back into the IOAPIC. */
  readonly ioapicSink: InterruptMessageSink;
  /** MSI routes' messages: the APIC bus, or KVM_SIGNAL_MSI. */
  readonly sendMsi: MsiSender;
  /** The PIC's INT output changed level (called after the PIC lock is released). */
  readonly onPicOutput: (level: boolean) => void;
}

export interface LegacyIrqCoreOptions {
  readonly ioapicVersion: IoapicVersion;
  /** Words after the core's that the chip keeps for itself in the same shared state. */
  readonly extraWords: number;
}

/** What a view of the core is built from. A chip's descriptor carries these fields; transfer `registry`. */
export interface LegacyIrqCoreDescriptor {
  readonly state: SharedArrayBuffer;
  readonly pic: PicPairDescriptor;
  readonly ioapic: IoapicDescriptor;
  readonly routes: SharedRoutingTableDescriptor;
  readonly registry: MessagePort;
}

/** The core's snapshot sections, each in the shared-state format. */
export interface LegacyIrqCoreSections {
  readonly lines: Uint8Array;
  readonly pic: Uint8Array;
  readonly ioapic: Uint8Array;
  readonly routes: Uint8Array;
  readonly events: Uint8Array;
}

/** Sections that passed `validateSections`: what the two restore steps apply. */
export interface ValidatedCoreSections {
  readonly sections: LegacyIrqCoreSections;
  readonly lines: Int32Array;
  readonly routes: IrqRoute[];
  readonly events: Int32Array;
}

export class LegacyIrqCore {
  /** Signalled while `delayed` holds work: this core object's (a chip's clones share it). */
  private readonly delayedToken: Event = Event.create();
  /** Indexes of events whose IOAPIC assertion waits for `processDelayedIrqEvents`. */
  private readonly delayed: IrqEventIndex[] = [];

  private constructor(
    readonly words: Int32Array,
    readonly pic: PicPair,
    readonly ioapic: Ioapic,
    /** The shared routing table. Change it through `routeIrq`/`setIrqRoutes`, or follow a direct change with `rewireLevelPins`. */
    readonly routeTable: SharedRoutingTable,
    private readonly registry: IrqEventRegistry,
    private readonly msiSender: MsiSender,
    private readonly clock: Clock,
    onPicOutput: (level: boolean) => void,
  ) {
    registry.onSlotCleared = (index) => {
      this.dropDelayed(index);
    };
    pic.setOutputListener(onPicOutput);
    for (let irq = 0; irq < PIC_IRQS; irq++) {
      pic.setAckListener(irq, () => {
        this.endLevelInterrupts(irq < PIC_PINS_PER_CHIP ? IrqSourceChip.PicPrimary : IrqSourceChip.PicSecondary, irq % PIC_PINS_PER_CHIP);
      });
    }
    ioapic.setResampleListener((pin) => {
      this.endLevelInterrupts(IrqSourceChip.Ioapic, pin);
    });
  }

  /** A new core (the owner): controllers at RESET, the default routing table, no events. */
  static create(options: LegacyIrqCoreOptions, wiring: LegacyIrqCoreWiring): LegacyIrqCore {
    checkRange(options.extraWords, 0, Number.MAX_SAFE_INTEGER, 'extra state words');
    const words = allocateStateWords(CORE_WORDS_END - LOCK_WORDS + options.extraWords);
    const ioapic = Ioapic.create({ sink: wiring.ioapicSink, clock: wiring.clock, version: options.ioapicVersion });
    return new LegacyIrqCore(
      words,
      PicPair.create(),
      ioapic,
      SharedRoutingTable.create(IOAPIC_PIN_COUNT, defaultIrqRoutes()),
      new IrqEventRegistry(words, REGISTRY_GENERATION, undefined),
      wiring.sendMsi,
      wiring.clock,
      wiring.onPicOutput,
    );
  }

  /** A view on this thread of the core a descriptor describes. */
  static fromDescriptor(descriptor: LegacyIrqCoreDescriptor, wiring: LegacyIrqCoreWiring): LegacyIrqCore {
    // Descriptors arrive through postMessage: the type is a claim to check.
    check((descriptor.state as unknown) instanceof SharedArrayBuffer, ErrorCode.EINVAL, 'chip descriptor without its state buffer');
    const words = new Int32Array(descriptor.state);
    return new LegacyIrqCore(
      words,
      PicPair.fromState(descriptor.pic),
      Ioapic.fromState(descriptor.ioapic, { sink: wiring.ioapicSink, clock: wiring.clock }),
      SharedRoutingTable.fromDescriptor(descriptor.routes),
      new IrqEventRegistry(words, REGISTRY_GENERATION, descriptor.registry),
      wiring.sendMsi,
      wiring.clock,
      wiring.onPicOutput,
    );
  }

  /** What a view on another thread needs (owner only: it opens a registry channel for the view). */
  viewDescriptor(): LegacyIrqCoreDescriptor {
    return {
      state: this.words.buffer as SharedArrayBuffer,
      pic: this.pic.descriptor(),
      ioapic: this.ioapic.descriptor(),
      routes: this.routeTable.descriptor(),
      registry: this.registry.openView(),
    };
  }

  /** Index of the first of the chip's own words (`extraWords` of them). */
  get extraWordsAt(): number {
    return CORE_WORDS_END;
  }

  counters(): Readonly<Record<ChipCounterName, number>> {
    const result = {} as Record<ChipCounterName, number>;
    for (const name of CHIP_COUNTER_NAMES) result[name] = Atomics.load(this.words, counterIndex(name)) >>> 0;
    return result;
  }

  /** The routes now in force (a copy). */
  routes(): IrqRoute[] {
    return this.routeTable.current().routes();
  }

  // -------------------------------------------------------------------------------------------
  // Registration and routing
  // -------------------------------------------------------------------------------------------

  /** Registers an event (owner only; EBUSY for a trigger already registered); returns its slot. */
  registerEvent(gsi: number, trigger: Event, resample: Event | undefined, source: IrqEventSource): IrqEventIndex {
    checkGsi(gsi);
    const index = this.registry.register(gsi, trigger, resample, source);
    if (resample !== undefined) this.rewireLevelPins();
    return index;
  }

  /** Unregisters the first registration of `trigger` on `gsi`; nothing happens when there is none. */
  unregisterEvent(gsi: number, trigger: Event): void {
    if (this.registry.unregister(gsi, trigger)) this.rewireLevelPins();
  }

  routeIrq(route: IrqRoute): void {
    this.routeTable.addRoute(route);
    this.rewireLevelPins();
  }

  setIrqRoutes(routes: readonly IrqRoute[]): void {
    this.routeTable.setRoutes(routes);
    this.rewireLevelPins();
  }

  irqEventTokens(): IrqEventToken[] {
    return this.registry.entries().map(([index, entry]) => ({ index, source: entry.source, event: entry.trigger }));
  }

  /**
   * Brings the pins in line with the level events and the routes: an IOAPIC pin is resampled iff
   * a level event's GSI is routed to it (the IOAPIC keeps this in shared state), and a line that
   * no level event reaches any more drops its level-event source, which nothing would ever lower
   * otherwise (a level IOAPIC entry would then re-deliver at every EOI).
   */
  rewireLevelPins(): void {
    const wired = this.levelWiredLines();
    const { ioapic } = this;
    for (let pin = 0; pin < IOAPIC_PIN_COUNT; pin++) {
      const resampled = wired[PIC_IRQS + pin] === 1;
      if (ioapic.isPinResampled(pin) !== resampled) ioapic.setPinResampled(pin, resampled);
    }
    withLock(this.words, () => {
      for (let line = 0; line < LINE_COUNT; line++) {
        const held = ((this.words[PIC_LINES + line] ?? 0) & LINE_SOURCE_LEVEL_EVENTS) !== 0;
        if (held && wired[line] === 0) this.driveLine(line, LINE_SOURCE_LEVEL_EVENTS, false);
      }
    });
  }

  // -------------------------------------------------------------------------------------------
  // Raising interrupts
  // -------------------------------------------------------------------------------------------

  /** The VMM's own line on every route of `irq` (KVM_IRQ_LINE); KVM's combined status. */
  serviceIrq(irq: number, level: boolean): number {
    checkGsi(irq);
    check(typeof level === 'boolean', ErrorCode.EINVAL, 'level must be a boolean');
    const sources = this.routeTable.current().sources(irq);
    let status = -1;
    for (const source of sources) {
      const result =
        source.kind === 'msi'
          ? this.sendMsi(source, level)
          : (withLock(this.words, () => this.driveLine(lineOf(source.chip, source.pin), LINE_SOURCE_SERVICE_IRQ, level)) ?? -1);
      // KVM's combination (x86-controllers.md §5.5): negative results are ignored, the rest summed.
      if (result >= 0) status = Math.max(status, 0) + result;
    }
    return status;
  }

  /** Nothing happens for an empty or never-used slot: its token may fire after it was unregistered. */
  serviceIrqEvent(index: IrqEventIndex): void {
    checkRange(index, 0, Number.MAX_SAFE_INTEGER, 'event index');
    const entry = this.registry.slot(index);
    if (entry === undefined) return;
    if (entry.trigger.tryRead() === 0n) {
      this.count('emptyEventServices');
      return;
    }
    this.count(entry.resample === undefined ? 'edgeEventsServiced' : 'levelEventsServiced');
    this.assertEvent(index, entry.gsi, entry.resample !== undefined, false);
  }

  processDelayedIrqEvents(): void {
    const { delayed, registry, delayedToken } = this;
    registry.sync();
    for (const index of delayed.splice(0)) {
      // Deferred work of an unregistered event was dropped when its slot was cleared.
      const entry = registry.slot(index);
      if (entry !== undefined) this.assertEvent(index, entry.gsi, entry.resample !== undefined, true);
    }
    if (delayed.length === 0) delayedToken.tryRead();
  }

  irqDelayedEventToken(): Event {
    return this.delayedToken;
  }

  /** An EOI of `vector` for the IOAPIC (a LAPIC's broadcast, or KVM's IOAPIC EOI exit). */
  broadcastEoi(vector: number): void {
    checkRange(vector, 0, 0xff, 'EOI vector');
    this.ioapic.endOfInterrupt(vector);
  }

  /** When the IOAPIC's storm limiter next re-delivers (Clock ns), or undefined. */
  nextIoapicDeadlineNs(): number | undefined {
    return this.ioapic.nextDeadlineNs();
  }

  /** Performs the IOAPIC's deferred re-deliveries that are due. */
  processIoapicDeferrals(): void {
    const deadline = this.ioapic.nextDeadlineNs();
    if (deadline !== undefined && deadline <= this.clock.nowNs()) this.ioapic.runDelayedWork();
  }

  // -------------------------------------------------------------------------------------------
  // Snapshots
  // -------------------------------------------------------------------------------------------

  /** The core's sections; each is taken under its own lock. */
  snapshotSections(): LegacyIrqCoreSections {
    const { words } = this;
    return {
      lines: encodeWordSection(LINE_SECTION, CORE_SECTION_VERSION, withLock(words, () => words.slice(PIC_LINES, CORE_WORDS_END))),
      pic: this.pic.snapshot(),
      ioapic: this.ioapic.snapshot(),
      routes: encodeWordSection(ROUTE_SECTION, CORE_SECTION_VERSION, this.routeWords()),
      events: encodeWordSection(EVENT_SECTION, CORE_SECTION_VERSION, this.eventWords()),
    };
  }

  /**
   * Decodes and checks every section (the controllers' by restoring them into scratch copies);
   * throws EINVAL, having changed nothing, at the first problem.
   */
  validateSections(sections: LegacyIrqCoreSections): ValidatedCoreSections {
    const lines = validateLineWords(decodeWordSection(sections.lines, LINE_SECTION, CORE_SECTION_VERSION));
    PicPair.fromState(scratchDescriptor(this.pic.descriptor())).restore(sections.pic);
    Ioapic.fromState(scratchDescriptor(this.ioapic.descriptor()), { sink: { deliver: () => -1 }, clock: this.clock }).restore(sections.ioapic);
    const routes = decodeRouteWords(decodeWordSection(sections.routes, ROUTE_SECTION, CORE_SECTION_VERSION), 0);
    // Throws EINVAL for a route the table would refuse.
    new GsiRoutingTable(IOAPIC_PIN_COUNT, routes);
    const events = this.validateEventWords(decodeWordSection(sections.events, EVENT_SECTION, CORE_SECTION_VERSION));
    return { sections, lines, routes, events };
  }

  /** Restore, first step: the line sources, the PIC and the IOAPIC. The controllers re-check their sections, which cannot fail now. */
  restoreControllers(validated: ValidatedCoreSections): void {
    withLock(this.words, () => {
      this.words.set(validated.lines, PIC_LINES);
    });
    this.pic.restore(validated.sections.pic);
    this.ioapic.restore(validated.sections.ioapic);
  }

  /** Restore, last step: the routes, the events' counts and deferred assertions, and the pins' wiring. */
  restoreTables(validated: ValidatedCoreSections): void {
    this.routeTable.setRoutes(validated.routes);
    this.restoreEvents(validated.events);
    this.rewireLevelPins();
  }

  // -------------------------------------------------------------------------------------------
  // Internals
  // -------------------------------------------------------------------------------------------

  /** Drops this view's deferred assertions for a slot whose event went (seed-apis.md §2.5 [bug?]). */
  private dropDelayed(index: IrqEventIndex): void {
    const { delayed } = this;
    for (let at = delayed.indexOf(index); at >= 0; at = delayed.indexOf(index)) {
      delayed.splice(at, 1);
      this.count('droppedDelayedEvents');
    }
  }

  /** Per line: 1 if a GSI with level events is routed to it. */
  private levelWiredLines(): Uint8Array {
    const routes = this.routeTable.current();
    const wired = new Uint8Array(LINE_COUNT);
    for (const gsi of this.registry.levelGsis()) {
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
    for (const source of this.routeTable.current().sources(gsi)) {
      if (source.kind === 'msi') {
        if (!ioapicOnly) this.sendMsi(source, true);
        continue;
      }
      if (ioapicOnly && source.chip !== IrqSourceChip.Ioapic) continue;
      const line = lineOf(source.chip, source.pin);
      const done = withLock(this.words, () => (level ? this.driveLine(line, LINE_SOURCE_LEVEL_EVENTS, true, true) : this.pulseLine(line)));
      if (done === undefined) this.defer(index);
    }
  }

  private defer(index: IrqEventIndex): void {
    this.delayed.push(index);
    this.count('delayedEvents');
    this.delayedToken.signal();
  }

  /**
   * Sets or clears one source of a line and drives the line with the OR of its sources. With
   * `tryIoapic`, an IOAPIC held by another thread makes this return undefined, having changed
   * nothing. Call with the line lock held.
   */
  private driveLine(line: number, source: number, level: boolean, tryIoapic = false): number | undefined {
    const { words } = this;
    const at = PIC_LINES + line;
    const before = words[at] ?? 0;
    const after = level ? before | source : before & ~source;
    const result = this.setLine(line, after !== 0, tryIoapic);
    if (result !== undefined) words[at] = after;
    return result;
  }

  /** An edge: high then low, unless some source holds the line high (then no edge: coalesced). */
  private pulseLine(line: number): number | undefined {
    if ((this.words[PIC_LINES + line] ?? 0) !== 0) {
      this.count('coalescedPulses');
      return 0;
    }
    const result = this.setLine(line, true, true);
    if (result !== undefined) this.setLine(line, false, false);
    return result;
  }

  private setLine(line: number, level: boolean, tryIoapic: boolean): number | undefined {
    if (line < PIC_IRQS) return this.pic.setIrq(line, level);
    const pin = line - PIC_IRQS;
    return tryIoapic ? this.ioapic.trySetIrq(pin, level) : this.ioapic.setIrq(pin, level);
  }

  /** An MSI route: a message on assert; nothing on deassert (seed-apis.md §6.21). */
  private sendMsi(source: Extract<IrqSource, { kind: 'msi' }>, level: boolean): number {
    if (!level) {
      this.count('msiDeassertsIgnored');
      return -1;
    }
    this.count('msisSent');
    return this.msiSender(source.address, source.data);
  }

  /**
   * A controller acknowledged a pin (the guest's EOI; for the PIC also AEOI, poll, ICW1): lower
   * the level-event source of every GSI routed to it that has level events, and signal their
   * resample events so each device re-checks and re-triggers if it still needs service.
   */
  private endLevelInterrupts(chip: IrqSourceChip, pin: number): void {
    const { registry } = this;
    const table = this.routeTable.current();
    for (const gsi of table.gsisOfPin(chip, pin)) {
      const levelEvents = registry.levelEventsOn(gsi);
      if (levelEvents.length === 0) continue;
      withLock(this.words, () => {
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
    const { registry, delayed } = this;
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

  /** The EVNT words must describe this core's registration table: same slots, GSIs and kinds. */
  private validateEventWords(words: Int32Array): Int32Array {
    const { registry } = this;
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

  private restoreEvents(words: Int32Array): void {
    const { registry, delayed, delayedToken } = this;
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
    Atomics.add(this.words, counterIndex(name), 1);
  }
}

/** The core's number for a controller pin: ISA IRQ 0–15 for the PIC, 16 + pin for the IOAPIC. */
function lineOf(chip: IrqSourceChip, pin: number): number {
  return chip === IrqSourceChip.Ioapic ? PIC_IRQS + pin : isaIrqOfPicPin(chip, pin);
}

/** A GSI the routing table can hold (KVM_MAX_IRQ_ROUTES); any other can never be routed. */
export function checkGsi(gsi: number): void {
  checkRange(gsi, 0, MAX_GSI_COUNT - 1, 'GSI');
}

function rejectSnapshot(why: string): never {
  throw new IrqChipError(ErrorCode.EINVAL, `chip snapshot rejected: ${why}`);
}

/** LINE: a source word per line holding only the two source bits, then the counters. */
function validateLineWords(words: Int32Array): Int32Array {
  if (words.length !== LINE_SECTION_WORDS) rejectSnapshot(`LINE section of ${words.length} words, expected ${LINE_SECTION_WORDS}`);
  for (let line = 0; line < LINE_COUNT; line++) {
    if (((words[line] ?? 0) & ~ALL_LINE_SOURCES) !== 0) rejectSnapshot(`line ${line} has unknown source bits`);
  }
  return words;
}
