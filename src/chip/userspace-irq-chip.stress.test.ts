/**
 * The chip under load from many threads (issue 4, "What this issue must show").
 *
 * Threads: the main thread owns the chip and is the VMM's service thread (it waits on the event
 * tokens and calls `serviceIrqEvent` / `processDelayedIrqEvents`); device workers signal edge and
 * level events, mask and unmask lines and change routes, each through its own view of the chip;
 * vCPU workers run SimVcpus that halt, wake, take interrupts, EOI them through the buses, and send
 * each other IPIs. See stress-plan.fixture.ts for the sources and the shared books.
 *
 * The books, per source, with both sides counted independently:
 * - the device counts its signals; the owner counts the reads of the event (each read returns the
 *   signals it collapses, eventfd's rule) and, for each read, the one thing the controllers did
 *   with the assertion, from their counters (it is the only thread that asserts, so the change
 *   it sees across one `serviceIrqEvent` is that assertion's): accepted into an IRR, coalesced
 *   with a request already in IRR, coalesced on a line already high, held on a masked level line
 *   (IOAPIC; resampled at unmask), latched in a masked 8259A's IRR;
 * - the vCPUs' handlers count the interrupts they take.
 * Then signals = delivered + collapsed + coalesced + held, and delivered = accepted + latched,
 * exactly, for every source; IPIs are sent = delivered. Totals are checked against the
 * controllers' own counters, and at the end every controller is idle.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Worker } from 'node:worker_threads';
import { Event, type EventDescriptor, type WaitResult } from '../event/event.ts';
import { IrqEdgeEvent, IrqLevelEvent } from '../event/irq-event.ts';
import { startTypeScriptWorker } from '../node/worker.ts';
import { IrqSourceChip, msiIrqRoute, type IrqRoute } from '../routing/irq-route.ts';
import { IOAPIC_PIN_COUNT } from '../x86/ioapic/ioapic.ts';
import type { LocalApic } from '../x86/lapic/local-apic.ts';
import { initialisePic, makeMachine, programIoapicPin, type TestMachine } from './chip-test-support.ts';
import {
  GuestLock,
  PIC_IRQS_PER_CHIP,
  PIC_MASTER_VECTOR_BASE,
  PIC_SLAVE_VECTOR_BASE,
  SourceKind,
  StressControl,
  allocateControl,
  isLevelKind,
  msiAddressFor,
  planSources,
  type StressDeviceData,
  type StressDeviceReport,
  type StressEventDescriptor,
  type StressPlanOptions,
  type StressSource,
  type StressVcpuData,
  type StressVcpuReport,
} from './stress-plan.fixture.ts';
import type { UserspaceIrqChip } from './userspace-irq-chip.ts';

const DEVICE_WORKER = new URL('./stress-device.fixture.ts', import.meta.url);
const VCPU_WORKER = new URL('./stress-vcpu.fixture.ts', import.meta.url);

const PLAN: StressPlanOptions = {
  vcpuCount: 3,
  deviceCount: 2,
  msiSources: 120,
  ipiChainsPerVcpuPair: 2,
  quotas: {
    [SourceKind.IoapicEdge]: 15_000,
    [SourceKind.IoapicLevel]: 10_000,
    [SourceKind.PicEdge]: 8_000,
    [SourceKind.PicLevel]: 6_000,
    [SourceKind.Msi]: 5_000,
    [SourceKind.Ipi]: 8_000,
  },
};
const REQUIRED_DELIVERIES = 1_000_000;
/** The run fails (it does not hang) when its books have not closed by then, */
const TIME_LIMIT_MS = 150_000;
/** or when no interrupt at all was delivered for this long (a lost interrupt, or a deadlock). */
const STALL_LIMIT_MS = 10_000;
const STALL_CHECK_INTERVAL_MS = 250;
/** How long the owner sleeps on its doorbell when it found nothing to service. */
const OWNER_IDLE_WAIT_MS = 2;
/** The owner yields to its event loop (worker messages) at least every this many passes. */
const PASSES_BETWEEN_YIELDS = 64;
const SEED = 0x1e5d;
/** The first anomalies are enough to tell what went wrong. */
const MAX_ANOMALIES_KEPT = 20;

// ---------------------------------------------------------------------------------------------
// The owner's side of the books
// ---------------------------------------------------------------------------------------------

/** A trigger event that counts the reads the chip makes of it and the signals those reads return. */
class CountingEvent implements Event {
  reads = 0;
  signalsRead = 0;

  constructor(private readonly inner: Event = Event.create()) {}

  tryRead(): bigint {
    const count = this.inner.tryRead();
    if (count !== 0n) {
      this.reads++;
      this.signalsRead += Number(count);
    }
    return count;
  }

  wait(): bigint {
    const count = this.inner.wait();
    this.reads++;
    this.signalsRead += Number(count);
    return count;
  }

  signal(n?: number | bigint): void {
    this.inner.signal(n);
  }
  waitAsync(timeoutMs?: number): Promise<WaitResult> {
    return this.inner.waitAsync(timeoutMs);
  }
  readCount(): bigint {
    return this.inner.readCount();
  }
  writeCount(value: number | bigint): void {
    this.inner.writeCount(value);
  }
  reset(): void {
    this.inner.reset();
  }
  tryClone(): Event {
    return this.inner.tryClone();
  }
  descriptor(): EventDescriptor {
    return this.inner.descriptor();
  }
  sameCounter(other: Event): boolean {
    return this.inner.sameCounter(other instanceof CountingEvent ? other.inner : other);
  }
}

/** What the controllers did with one assertion. */
const Outcome = {
  /** A new request in a local APIC's IRR (or the 8259A's). */
  Accepted: 'accepted',
  /** Merged with the same vector already requested in IRR (LAPIC or 8259A). */
  CoalescedInIrr: 'coalescedInIrr',
  /** An edge on a line already high, or a level assert while remote IRR is set (IOAPIC). */
  CoalescedOnLine: 'coalescedOnLine',
  /** A level assert on a masked IOAPIC pin: held; the unmask resamples it and the device asserts again. */
  HeldMasked: 'heldMasked',
  /** An assert on a pin masked in the IMR: latched in IRR, delivered once unmasked. */
  LatchedWhileMasked: 'latchedWhileMasked',
  /** Must not happen here: an edge discarded on a masked IOAPIC pin (the test masks only level pins). */
  DroppedMaskedEdge: 'droppedMaskedEdge',
  /** Must not happen here: a message no local APIC took. */
  Undelivered: 'undelivered',
  /** The IOAPIC was busy on another thread: the assertion waits for `processDelayedIrqEvents`. */
  Deferred: 'deferred',
} as const;
type Outcome = (typeof Outcome)[keyof typeof Outcome];

/**
 * The controller counters that tell what became of an assertion; all of them change only when the
 * owner asserts. An outcome's signature lists those it moves; one that moves and is in no signature
 * (a pulse the chip coalesced because another source held the line: every pin here has one
 * source) makes the service an anomaly.
 */
const Counter = {
  IoapicAccepted: 0,
  IoapicCoalescedInIrr: 1,
  IoapicCoalescedOnLine: 2,
  IoapicHeldMasked: 3,
  IoapicDroppedMaskedEdge: 4,
  IoapicUndelivered: 5,
  ChipDeferred: 6,
  ChipMsisSent: 7,
  LapicCoalesced: 8,
  BusNoDestination: 9,
  PicCoalesced: 10,
  PicLatchedMasked: 11,
  ChipCoalescedPulses: 12,
} as const;
type Counter = (typeof Counter)[keyof typeof Counter];
const COUNTER_COUNT = Object.keys(Counter).length;

/** Which counters one assertion moves, and by how much, for each outcome it can have. */
type Moves = readonly (readonly [Counter, number])[];
/** The same, as the expected change of every counter (index: `Counter`). */
type Signatures = readonly (readonly [Outcome, Int32Array])[];

function signatures(outcomes: readonly (readonly [Outcome, Moves])[]): Signatures {
  return outcomes.map(([outcome, moves]) => {
    const expected = new Int32Array(COUNTER_COUNT);
    for (const [counter, change] of moves) expected[counter] = change;
    return [outcome, expected] as const;
  });
}

const IOAPIC_SIGNATURES = signatures([
  [Outcome.Accepted, [[Counter.IoapicAccepted, 1]]],
  // The LAPIC counts the coalescing too: the same event, seen from both controllers.
  [Outcome.CoalescedInIrr, [[Counter.IoapicCoalescedInIrr, 1], [Counter.LapicCoalesced, 1]]],
  [Outcome.CoalescedOnLine, [[Counter.IoapicCoalescedOnLine, 1]]],
  [Outcome.HeldMasked, [[Counter.IoapicHeldMasked, 1]]],
  [Outcome.DroppedMaskedEdge, [[Counter.IoapicDroppedMaskedEdge, 1]]],
  [Outcome.Undelivered, [[Counter.IoapicUndelivered, 1]]],
  [Outcome.Deferred, [[Counter.ChipDeferred, 1]]],
]);
const MSI_SIGNATURES = signatures([
  [Outcome.Accepted, [[Counter.ChipMsisSent, 1]]],
  [Outcome.CoalescedInIrr, [[Counter.ChipMsisSent, 1], [Counter.LapicCoalesced, 1]]],
  [Outcome.Undelivered, [[Counter.ChipMsisSent, 1], [Counter.BusNoDestination, 1]]],
]);
const PIC_SIGNATURES = signatures([
  [Outcome.Accepted, []],
  [Outcome.CoalescedInIrr, [[Counter.PicCoalesced, 1]]],
  [Outcome.LatchedWhileMasked, [[Counter.PicLatchedMasked, 1]]],
]);
const SIGNATURES: Readonly<Record<Exclude<SourceKind, 'ipi'>, Signatures>> = {
  [SourceKind.IoapicEdge]: IOAPIC_SIGNATURES,
  [SourceKind.IoapicLevel]: IOAPIC_SIGNATURES,
  [SourceKind.Msi]: MSI_SIGNATURES,
  [SourceKind.PicEdge]: PIC_SIGNATURES,
  [SourceKind.PicLevel]: PIC_SIGNATURES,
};

/** Reads the counters of `Counter` from every controller of the chip. */
class CounterReader {
  /** The local APICs: their one counter is read alone, since `counters()` builds a record of twenty names per APIC. */
  private readonly localApics: readonly LocalApic[];

  constructor(private readonly chip: UserspaceIrqChip) {
    this.localApics = Array.from({ length: chip.vcpuCount }, (_, vcpu) => chip.localApic(vcpu));
  }

  read(into: Int32Array): void {
    const ioapic = this.chip.ioapic.counters();
    const own = this.chip.counters();
    const pic = this.chip.pic.counters();
    into[Counter.IoapicAccepted] = ioapic.messagesAccepted;
    into[Counter.IoapicCoalescedInIrr] = ioapic.messagesCoalesced;
    into[Counter.IoapicCoalescedOnLine] = ioapic.coalescedAsserts;
    into[Counter.IoapicHeldMasked] = ioapic.heldMaskedLevels;
    into[Counter.IoapicDroppedMaskedEdge] = ioapic.droppedMaskedEdges;
    into[Counter.IoapicUndelivered] = ioapic.messagesUndelivered;
    into[Counter.ChipDeferred] = own.delayedEvents;
    into[Counter.ChipMsisSent] = own.msisSent;
    into[Counter.LapicCoalesced] = this.localApics.reduce((total, apic) => total + apic.counter('coalescedInterrupts'), 0);
    into[Counter.BusNoDestination] = this.chip.apicBus.counters().noDestination;
    into[Counter.PicCoalesced] = pic.coalescedRequests;
    into[Counter.PicLatchedMasked] = pic.maskedRequests;
    into[Counter.ChipCoalescedPulses] = own.coalescedPulses;
  }
}

/** The outcome whose signature is exactly the change from `before` to `after`; undefined when none is. */
function outcomeOf(candidates: Signatures, before: Int32Array, after: Int32Array): Outcome | undefined {
  const matches = (expected: Int32Array): boolean => expected.every((change, index) => (after[index] ?? 0) - (before[index] ?? 0) === change);
  return candidates.find(([, expected]) => matches(expected))?.[0];
}

function describeChange(before: Int32Array, after: Int32Array): string {
  const moved = Object.entries(Counter).flatMap(([name, index]) => {
    const delta = (after[index] ?? 0) - (before[index] ?? 0);
    return delta === 0 ? [] : [`${name} ${delta > 0 ? '+' : ''}${delta}`];
  });
  return `counters moved: [${moved.join(', ')}]`;
}

/** A source the owner services: its registration, its counting trigger, and the outcomes of its reads. */
interface ServicedSource {
  readonly source: StressSource;
  readonly index: number;
  readonly trigger: CountingEvent;
  readonly signatures: Signatures;
  readonly outcomes: Record<Outcome, number>;
}

class Owner {
  readonly anomalies: string[] = [];
  services = 0;
  private readonly counters: CounterReader;
  /** The counters after the last service: nothing but the owner's assertions moves them. */
  private before = new Int32Array(COUNTER_COUNT);
  private after = new Int32Array(COUNTER_COUNT);

  constructor(
    private readonly chip: UserspaceIrqChip,
    readonly serviced: readonly ServicedSource[],
  ) {
    this.counters = new CounterReader(chip);
    this.counters.read(this.before);
  }

  /** One pass over the event tokens: services every one that is readable. Returns how many it serviced. */
  pass(): number {
    let count = 0;
    for (const entry of this.serviced) {
      if (entry.trigger.readCount() === 0n) continue;
      this.service(entry);
      count++;
    }
    return count;
  }

  /**
   * `serviceIrqEvent`, then `processDelayedIrqEvents` until the assertion is no longer deferred,
   * so that every counter movement belongs to this one source.
   */
  private service(entry: ServicedSource): void {
    this.chip.serviceIrqEvent(entry.index);
    for (;;) {
      this.counters.read(this.after);
      const outcome = outcomeOf(entry.signatures, this.before, this.after);
      if (outcome === undefined && this.anomalies.length < MAX_ANOMALIES_KEPT) {
        this.anomalies.push(`${entry.source.name}: ${describeChange(this.before, this.after)}`);
      }
      [this.before, this.after] = [this.after, this.before];
      if (outcome !== Outcome.Deferred) {
        if (outcome !== undefined) entry.outcomes[outcome]++;
        break;
      }
      entry.outcomes[Outcome.Deferred]++;
      this.chip.processDelayedIrqEvents();
    }
    this.services++;
  }
}

// ---------------------------------------------------------------------------------------------
// Setting up the machine
// ---------------------------------------------------------------------------------------------

function routeOf(source: StressSource): IrqRoute {
  switch (source.kind) {
    case SourceKind.Msi:
      return msiIrqRoute(source.gsi, msiAddressFor(source.destination), source.vector);
    case SourceKind.PicEdge:
    case SourceKind.PicLevel: {
      const chip = source.picIrq < PIC_IRQS_PER_CHIP ? IrqSourceChip.PicPrimary : IrqSourceChip.PicSecondary;
      return { gsi: source.gsi, source: { kind: 'irqchip', chip, pin: source.picIrq % PIC_IRQS_PER_CHIP } };
    }
    default:
      return { gsi: source.gsi, source: { kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: source.ioapicPins[0] ?? 0 } };
  }
}

/** The guest's setup: routes, redirection entries, ELCR and IMR, and every AP running. */
function programMachine(machine: TestMachine, sources: readonly StressSource[]): void {
  const { chip } = machine;
  const guest = machine.vcpus[0]?.bus;
  assert.ok(guest);
  chip.setIrqRoutes(sources.filter((source) => source.gsi >= 0).map(routeOf));
  for (const source of sources) {
    for (const pin of source.ioapicPins) {
      programIoapicPin(machine, pin, { vector: source.vector, level: source.kind === SourceKind.IoapicLevel, destination: source.destination });
    }
  }
  initialisePic(machine, PIC_MASTER_VECTOR_BASE, PIC_SLAVE_VECTOR_BASE);
  const picSources = sources.filter((source) => source.picIrq >= 0);
  const bits = (selected: readonly StressSource[]): number => selected.reduce((mask, source) => mask | (1 << source.picIrq), 0);
  const levelBits = bits(picSources.filter((source) => source.kind === SourceKind.PicLevel));
  const CASCADE_IRQ_BIT = 1 << 2;
  const enabled = bits(picSources) | CASCADE_IRQ_BIT;
  guest.outb(0x4d0, levelBits & 0xff);
  guest.outb(0x4d1, levelBits >>> PIC_IRQS_PER_CHIP);
  guest.outb(0x21, ~enabled & 0xff);
  guest.outb(0xa1, (~enabled >>> PIC_IRQS_PER_CHIP) & 0xff);
  for (let vcpu = 1; vcpu < chip.vcpuCount; vcpu++) chip.setMpState(vcpu, 'runnable');
}

/** Registers each GSI source's event with the owner; returns what the owner services and what the devices get. */
function registerEvents(chip: UserspaceIrqChip, sources: readonly StressSource[]): { serviced: ServicedSource[]; events: Record<number, StressEventDescriptor> } {
  const serviced: ServicedSource[] = [];
  const events: Record<number, StressEventDescriptor> = {};
  for (const source of sources) {
    if (source.kind === SourceKind.Ipi) continue;
    const trigger = new CountingEvent();
    const registration = { deviceId: source.device, queueId: source.id, deviceName: source.name };
    let index: number;
    if (isLevelKind(source.kind)) {
      const event = IrqLevelEvent.fromEventPair(trigger, Event.create());
      index = chip.registerLevelIrqEvent(source.gsi, event, registration);
      events[source.id] = event.descriptor();
    } else {
      const event = IrqEdgeEvent.fromEvent(trigger);
      index = chip.registerEdgeIrqEvent(source.gsi, event, registration);
      events[source.id] = event.descriptor();
    }
    const outcomes = Object.fromEntries(Object.values(Outcome).map((outcome) => [outcome, 0])) as Record<Outcome, number>;
    serviced.push({ source, index, trigger, signatures: SIGNATURES[source.kind], outcomes });
  }
  return { serviced, events };
}

// ---------------------------------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------------------------------

interface Crew {
  readonly devices: Worker[];
  readonly vcpus: Worker[];
  readonly deviceReports: StressDeviceReport[];
  readonly vcpuReports: StressVcpuReport[];
  readonly errors: string[];
}

function startCrew(chip: UserspaceIrqChip, sources: readonly StressSource[], events: Record<number, StressEventDescriptor>, control: SharedArrayBuffer, ownerDoorbell: Event): Crew {
  const crew: Crew = { devices: [], vcpus: [], deviceReports: [], vcpuReports: [], errors: [] };
  const shared = { sources, deviceCount: PLAN.deviceCount, vcpuCount: PLAN.vcpuCount, control };
  const watch = (worker: Worker, name: string, reports: unknown[]): Worker => {
    worker.on('message', (report) => reports.push(report));
    worker.on('error', (error) => crew.errors.push(`${name}: ${String(error)}`));
    return worker;
  };
  const guestLock = new GuestLock();
  for (let vcpuId = 0; vcpuId < PLAN.vcpuCount; vcpuId++) {
    const view = chip.createView();
    const workerData: StressVcpuData = { ...shared, chip: view, vcpuId };
    crew.vcpus.push(watch(startTypeScriptWorker(VCPU_WORKER, { workerData, transferList: [view.registry] }), `vCPU ${vcpuId}`, crew.vcpuReports));
  }
  for (let device = 0; device < PLAN.deviceCount; device++) {
    const view = chip.createView();
    const mine = Object.fromEntries(Object.entries(events).filter(([id]) => sources[Number(id)]?.device === device));
    const workerData: StressDeviceData = { ...shared, chip: view, device, events: mine, guestLock: guestLock.buffer, ownerDoorbell: ownerDoorbell.descriptor(), seed: SEED + device };
    crew.devices.push(watch(startTypeScriptWorker(DEVICE_WORKER, { workerData, transferList: [view.registry] }), `device ${device}`, crew.deviceReports));
  }
  return crew;
}

// ---------------------------------------------------------------------------------------------
// Closing the books
// ---------------------------------------------------------------------------------------------

/** Deliveries the vCPUs must have taken from a serviced source: what reached an IRR. */
function expectedDeliveries(entry: ServicedSource): number {
  return entry.outcomes[Outcome.Accepted] + entry.outcomes[Outcome.LatchedWhileMasked];
}

function ipiBooksClosed(control: StressControl, source: StressSource): boolean {
  return control.signals(source.id) === source.quota && control.handled(source.id) === source.quota;
}

function allBooksClosed(owner: Owner, control: StressControl, sources: readonly StressSource[], crew: Crew): boolean {
  if (crew.deviceReports.length < PLAN.deviceCount) return false;
  const serviceable = owner.serviced.every((entry) => entry.trigger.readCount() === 0n && control.handled(entry.source.id) === expectedDeliveries(entry));
  return serviceable && sources.every((source) => source.kind !== SourceKind.Ipi || ipiBooksClosed(control, source));
}

/** One source's books (or, summed, a kind's), each figure counted where it happens. */
interface Books {
  readonly sources: number;
  /** Device: triggers (edge, level) or sends (IPI). */
  readonly signals: number;
  /** vCPU handlers: interrupts taken. */
  readonly delivered: number;
  /** Owner: signals merged into another by the eventfd count (signals − reads). */
  readonly collapsed: number;
  /** Owner, per read: merged with a request already in an IRR (LAPIC or 8259A). */
  readonly coalescedInIrr: number;
  /** Owner, per read: an edge on a line already high, a level with remote IRR set. */
  readonly coalescedOnLine: number;
  /** Owner, per read: a level held on a masked IOAPIC pin, resampled at the unmask. */
  readonly heldMasked: number;
  /** Owner, per read: latched in a masked 8259A's IRR (and delivered once unmasked). */
  readonly latchedMasked: number;
  /** Owner: assertions the IOAPIC deferred (busy on another thread) before they were done. */
  readonly deferred: number;
  readonly unbalanced: number;
}

const NO_BOOKS: Books = { sources: 0, signals: 0, delivered: 0, collapsed: 0, coalescedInIrr: 0, coalescedOnLine: 0, heldMasked: 0, latchedMasked: 0, deferred: 0, unbalanced: 0 };

function booksOf(entry: ServicedSource, control: StressControl): Books {
  const { source, trigger, outcomes } = entry;
  const books = {
    sources: 1,
    signals: control.signals(source.id),
    delivered: control.handled(source.id),
    collapsed: control.signals(source.id) - trigger.reads,
    coalescedInIrr: outcomes[Outcome.CoalescedInIrr],
    coalescedOnLine: outcomes[Outcome.CoalescedOnLine],
    heldMasked: outcomes[Outcome.HeldMasked],
    latchedMasked: outcomes[Outcome.LatchedWhileMasked],
    deferred: outcomes[Outcome.Deferred],
  };
  const balanced =
    trigger.signalsRead === books.signals &&
    books.signals === books.delivered + books.collapsed + books.coalescedInIrr + books.coalescedOnLine + books.heldMasked &&
    books.delivered === expectedDeliveries(entry) &&
    outcomes[Outcome.DroppedMaskedEdge] === 0 &&
    outcomes[Outcome.Undelivered] === 0;
  return { ...books, unbalanced: balanced ? 0 : 1 };
}

/** An IPI chain has one IPI in flight, so nothing merges: sent = delivered = quota. */
function ipiBooks(source: StressSource, control: StressControl): Books {
  const signals = control.signals(source.id);
  const delivered = control.handled(source.id);
  return { ...NO_BOOKS, sources: 1, signals, delivered, unbalanced: signals === delivered && signals === source.quota ? 0 : 1 };
}

function addBooks(sum: Books, books: Books): Books {
  const result = { ...sum };
  for (const field of Object.keys(NO_BOOKS) as (keyof Books)[]) result[field] = sum[field] + books[field];
  return result;
}

function describeBooks(label: string, books: Books): string {
  return (
    `${label.padEnd(24)} signals ${String(books.signals).padStart(8)} = delivered ${String(books.delivered).padStart(8)}` +
    ` + eventfd-collapsed ${books.collapsed} + coalesced in IRR ${books.coalescedInIrr} + on line ${books.coalescedOnLine}` +
    ` + held masked ${books.heldMasked}; latched masked ${books.latchedMasked}, deferred ${books.deferred}` +
    (books.unbalanced === 0 ? '' : `  <-- ${books.unbalanced} UNBALANCED`)
  );
}

function sumOver(entries: readonly ServicedSource[], kinds: readonly SourceKind[], outcome: Outcome): number {
  return entries.filter((entry) => kinds.includes(entry.source.kind)).reduce((total, entry) => total + entry.outcomes[outcome], 0);
}

/** The controllers' own totals must be exactly the sum of what the owner attributed to each source. */
function checkControllerTotals(chip: UserspaceIrqChip, owner: Owner, crew: Crew): void {
  const { serviced } = owner;
  const ioapicKinds = [SourceKind.IoapicEdge, SourceKind.IoapicLevel];
  const picKinds = [SourceKind.PicEdge, SourceKind.PicLevel];
  const ioapic = chip.ioapic.counters();
  assert.equal(ioapic.messagesAccepted, sumOver(serviced, ioapicKinds, Outcome.Accepted), 'IOAPIC messages accepted');
  assert.equal(ioapic.messagesCoalesced, sumOver(serviced, ioapicKinds, Outcome.CoalescedInIrr), 'IOAPIC messages coalesced in IRR');
  assert.equal(ioapic.coalescedAsserts, sumOver(serviced, ioapicKinds, Outcome.CoalescedOnLine), 'IOAPIC asserts coalesced on the line');
  assert.equal(ioapic.heldMaskedLevels, sumOver(serviced, ioapicKinds, Outcome.HeldMasked), 'IOAPIC levels held while masked');
  assert.equal(ioapic.droppedMaskedEdges, 0, 'no edge pin is ever masked');
  assert.equal(ioapic.messagesUndelivered, 0);
  const pic = chip.pic.counters();
  assert.equal(pic.coalescedRequests, sumOver(serviced, picKinds, Outcome.CoalescedInIrr), '8259A requests coalesced');
  assert.equal(pic.maskedRequests, sumOver(serviced, picKinds, Outcome.LatchedWhileMasked), '8259A requests latched while masked');
  assert.equal(pic.spuriousAcknowledges, crew.vcpuReports.reduce((total, report) => total + report.spuriousIrq7 + report.spuriousIrq15, 0), 'spurious INTAs seen by the guest');
  let lapicCoalesced = 0;
  for (let vcpu = 0; vcpu < chip.vcpuCount; vcpu++) {
    const counters = chip.localApic(vcpu).counters();
    lapicCoalesced += counters.coalescedInterrupts;
    assert.equal(counters.spuriousInterrupts, 0, `vCPU ${vcpu}: no spurious APIC interrupt`);
    assert.equal(counters.droppedWhileDisabled, 0, `vCPU ${vcpu}: nothing dropped`);
  }
  // IPIs have one in flight per chain, so they never coalesce: the LAPICs' coalescing is the IOAPIC's and the MSIs'.
  assert.equal(lapicCoalesced, ioapic.messagesCoalesced + sumOver(serviced, [SourceKind.Msi], Outcome.CoalescedInIrr), 'LAPIC coalesced interrupts');
  const counters = chip.counters();
  const reads = serviced.reduce((total, entry) => total + entry.trigger.reads, 0);
  assert.equal(counters.edgeEventsServiced + counters.levelEventsServiced, reads, 'events serviced = reads with something to read');
  assert.equal(counters.emptyEventServices, 0);
  assert.equal(counters.droppedDelayedEvents, 0);
  assert.equal(counters.msisSent, serviced.filter((entry) => entry.source.kind === SourceKind.Msi).reduce((total, entry) => total + entry.trigger.reads, 0));
  const resamplesSeen = crew.deviceReports.reduce((total, report) => total + Object.values(report.resamples).reduce((sum, count) => sum + count, 0), 0);
  assert.equal(counters.resamplesSignalled, resamplesSeen, 'every resample the chip signalled reached its device, and no other');
}

/** Nothing is left anywhere: no request, nothing in service, no line high, no remote IRR. */
function checkIdle(chip: UserspaceIrqChip, sources: readonly StressSource[]): void {
  for (let vcpu = 0; vcpu < chip.vcpuCount; vcpu++) {
    const apic = chip.localApic(vcpu);
    for (const source of sources) {
      assert.equal(apic.irr(source.vector) || apic.isr(source.vector), false, `vCPU ${vcpu}: ${source.name} left in IRR/ISR`);
    }
  }
  for (let pin = 0; pin < IOAPIC_PIN_COUNT; pin++) {
    assert.equal(chip.ioapic.lineLevel(pin), false, `IOAPIC pin ${pin} line left high`);
    assert.equal(chip.ioapic.remoteIrr(pin), false, `IOAPIC pin ${pin} remote IRR left set`);
  }
  for (const picChip of [0, 1] as const) {
    const registers = chip.pic.registers(picChip);
    assert.equal(registers.irr & ~(1 << 2), 0, `8259A ${picChip} IRR left`);
    assert.equal(registers.isr, 0, `8259A ${picChip} ISR left`);
  }
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

/** Fails the run when the vCPUs' handlers have taken nothing for `STALL_LIMIT_MS`. */
class StallWatch {
  private delivered = -1;
  private lastProgressAt = performance.now();
  private nextCheckAt = 0;

  constructor(
    private readonly control: StressControl,
    private readonly sources: readonly StressSource[],
  ) {}

  check(now: number): void {
    if (now < this.nextCheckAt) return;
    this.nextCheckAt = now + STALL_CHECK_INTERVAL_MS;
    const delivered = this.sources.reduce((total, source) => total + this.control.handled(source.id), 0);
    if (delivered !== this.delivered) {
      this.delivered = delivered;
      this.lastProgressAt = now;
    } else if (now - this.lastProgressAt > STALL_LIMIT_MS) {
      throw new Error(`no interrupt delivered for ${STALL_LIMIT_MS} ms before the books closed: stalled`);
    }
  }
}

async function waitFor(condition: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test('stress: device workers signal, mask and reroute while vCPU workers take and EOI interrupts; every signal is accounted for', { timeout: TIME_LIMIT_MS + 30_000 }, async (t: TestContext) => {
  const machine = makeMachine({ vcpuCount: PLAN.vcpuCount }, { picVectorBases: { master: PIC_MASTER_VECTOR_BASE, slave: PIC_SLAVE_VECTOR_BASE } });
  const { chip } = machine;
  const sources = planSources(PLAN);
  programMachine(machine, sources);
  const { serviced, events } = registerEvents(chip, sources);
  const controlBuffer = allocateControl(sources.length, PLAN.deviceCount);
  const control = new StressControl(controlBuffer, sources.length);
  const owner = new Owner(chip, serviced);
  const ownerDoorbell = Event.create();
  const started = performance.now();
  const crew = startCrew(chip, sources, events, controlBuffer, ownerDoorbell);
  let failure: Error | undefined;
  let firstServiceAt: number | undefined;
  const stallWatch = new StallWatch(control, sources);
  try {
    for (let passes = 1; ; passes++) {
      ownerDoorbell.tryRead();
      const servicedNow = owner.pass();
      firstServiceAt ??= servicedNow > 0 ? performance.now() : undefined;
      if (crew.errors.length > 0 || owner.anomalies.length > 0) throw new Error(`run failed: ${[...crew.errors, ...owner.anomalies].join('; ')}`);
      if (performance.now() - started > TIME_LIMIT_MS) throw new Error(`the books did not close within ${TIME_LIMIT_MS} ms`);
      if (servicedNow > 0) {
        if (passes % PASSES_BETWEEN_YIELDS === 0) await nextTurn();
        continue;
      }
      if (allBooksClosed(owner, control, sources, crew)) break;
      stallWatch.check(performance.now());
      await ownerDoorbell.waitAsync(OWNER_IDLE_WAIT_MS);
    }
    control.requestStop();
    chip.kickHaltedVcpus();
    await waitFor(() => crew.vcpuReports.length === PLAN.vcpuCount || crew.errors.length > 0, 'the vCPU workers to stop', 10_000);
  } catch (error) {
    failure = error as Error;
    control.abort();
    chip.kickHaltedVcpus();
  } finally {
    await Promise.all([...crew.devices, ...crew.vcpus].map((worker) => worker.terminate()));
  }
  const elapsedMs = performance.now() - started;

  const books = new Map<StressSource, Books>([
    ...serviced.map((entry): [StressSource, Books] => [entry.source, booksOf(entry, control)]),
    ...sources.filter((source) => source.kind === SourceKind.Ipi).map((source): [StressSource, Books] => [source, ipiBooks(source, control)]),
  ]);
  for (const kind of Object.values(SourceKind)) {
    const ofKind = [...books].filter(([source]) => source.kind === kind);
    t.diagnostic(describeBooks(`${kind} (${ofKind.length} sources)`, ofKind.reduce((sum, [, entry]) => addBooks(sum, entry), NO_BOOKS)));
  }
  const totals = [...books.values()].reduce(addBooks, NO_BOOKS);
  t.diagnostic(describeBooks('TOTAL', totals));
  for (const [source, entry] of books) if (entry.unbalanced !== 0) t.diagnostic(describeBooks(source.name, entry));
  const delivered = totals.delivered;
  t.diagnostic(`${owner.services} services in ${Math.round(elapsedMs)} ms`);
  const runningMs = elapsedMs - ((firstServiceAt ?? started) - started);
  t.diagnostic(`workers started in ${Math.round(elapsedMs - runningMs)} ms; then ${Math.round(delivered / (runningMs / 1000))} interrupts/s delivered`);
  for (const report of crew.deviceReports) {
    const sum = (record: Readonly<Record<number, number>>): number => Object.values(record).reduce((total, count) => total + count, 0);
    t.diagnostic(
      `device ${report.device}: ${report.loops} loops, ${report.masks} masks (${sum(report.heldAtUnmask)} unmasks found a level held, ${sum(report.resampledAtUnmask)} fired),` +
        ` ${report.routeChanges} route changes, ${report.retargets} IOAPIC retargets`,
    );
  }
  for (const report of crew.vcpuReports) {
    t.diagnostic(`vCPU ${report.vcpuId}: took ${report.taken}, ${report.runnableWaits} wake-ups, ${report.interruptedWaits} kicks, ${report.spuriousIrq7} spurious IRQ 7, ${report.spuriousIrq15} spurious IRQ 15`);
  }

  if (failure !== undefined) throw failure;
  assert.deepEqual(crew.errors, []);
  assert.deepEqual(owner.anomalies, []);
  assert.deepEqual(crew.deviceReports.flatMap((report) => report.failures), []);
  assert.deepEqual(crew.vcpuReports.flatMap((report) => report.failures), []);
  assert.deepEqual([...books].filter(([, entry]) => entry.unbalanced !== 0).map(([source, entry]) => describeBooks(source.name, entry)), [], 'every source balances');
  for (const source of sources.filter((candidate) => isLevelKind(candidate.kind))) {
    assert.equal(control.handled(source.id), source.quota, `${source.name}: every work item was delivered`);
  }
  for (const report of crew.deviceReports) {
    assert.deepEqual(report.resampledAtUnmask, report.heldAtUnmask, `device ${report.device}: each held level fired (resampled) at its unmask`);
  }
  assert.ok(
    crew.deviceReports.some((report) => Object.keys(report.heldAtUnmask).length > 0),
    'some level line was asserted while masked and fired at its unmask',
  );
  checkControllerTotals(chip, owner, crew);
  checkIdle(chip, sources);
  assert.ok(delivered >= REQUIRED_DELIVERIES, `${delivered} interrupts delivered, at least ${REQUIRED_DELIVERIES} required`);
});

/*
 * Found by the stress test (a chip bug at the time, since fixed in pic.ts by deferring the output
 * update until the acknowledge listeners have run): after the guest's EOI of a level interrupt on
 * the secondary 8259A, the PIC re-evaluated its cascade while the line was still high (the EOI's
 * acknowledge listener, which lowers the resampled line, ran only after that), so the master
 * latched IR2 and the guest next took a spurious IRQ 15, once per such interrupt. KVM runs the ack
 * notifiers (the resampler lowers the line) before pic_update_irq, and a real device has dropped
 * its line before the EOI, so neither sees one.
 */
test(
  'regression (found by the stress test): a level IRQ on the secondary 8259A is not followed by a spurious IRQ 15 after its EOI',
  () => {
    const machine = makeMachine({}, { picVectorBases: { master: PIC_MASTER_VECTOR_BASE, slave: PIC_SLAVE_VECTOR_BASE } });
    const { chip } = machine;
    const vcpu = machine.vcpus[0];
    assert.ok(vcpu);
    const irq = 11;
    vcpu.bus.outb(0x4d1, 1 << (irq - PIC_IRQS_PER_CHIP)); // ELCR: IRQ 11 level-triggered
    vcpu.bus.outb(0x21, ~(1 << 2) & 0xff); // master: only the cascade unmasked
    vcpu.bus.outb(0xa1, ~(1 << (irq - PIC_IRQS_PER_CHIP)) & 0xff);
    chip.setIrqRoutes([{ gsi: irq, source: { kind: 'irqchip', chip: IrqSourceChip.PicSecondary, pin: irq - PIC_IRQS_PER_CHIP } }]);
    const level = new IrqLevelEvent();
    const index = chip.registerLevelIrqEvent(irq, level, { deviceId: 1, queueId: 0, deviceName: 'level-device' });
    level.trigger();
    chip.serviceIrqEvent(index);
    // The default handler EOIs the slave, then the master, as a guest does for IRQ 8–15.
    assert.deepEqual(vcpu.runUntilIdle(chip), [PIC_SLAVE_VECTOR_BASE + irq - PIC_IRQS_PER_CHIP], 'IRQ 11 once, and no spurious IRQ 15 after it');
    assert.equal(level.clearResample(), true);
    assert.equal(chip.pic.counters().spuriousAcknowledges, 0);
  },
);
