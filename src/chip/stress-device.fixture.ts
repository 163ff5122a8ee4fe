/**
 * A device worker of the chip's stress test. It drives its share of the sources through the
 * events the owner registered (handed over by descriptor), and meanwhile does what a guest's
 * drivers do to a live machine, on its own view of the chip: it masks and unmasks level lines
 * (IOAPIC RTE mask bits, 8259A IMR bits), retargets MSI routes and IOAPIC entries, and moves edge
 * GSIs between IOAPIC pins.
 *
 * Pacing, so that many interrupts are in flight without a source flooding the chip:
 * - an edge or MSI source signals again once its handler count has moved past the count it saw
 *   at its previous signal. Every signal is then resolved before the device waits on it again: it
 *   was delivered, or it merged (eventfd count, IRR) with an interrupt still pending, whose
 *   delivery comes later and moves the count. Now and then it sends a burst of two or three
 *   signals on consecutive loops, so that the chip has something to coalesce: in the eventfd when
 *   the owner has not read the first yet, in IRR when it has and the vCPU has not taken it.
 * - a level source produces a few work items when it has none and triggers while it has work and
 *   no trigger outstanding; the guest's handler takes one item per interrupt, and the resample
 *   after its EOI (or after an unmask that found the line held) ends the outstanding trigger.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { seededRandom } from '../base/seeded-random.ts';
import { Event } from '../event/event.ts';
import { IrqEdgeEvent, IrqLevelEvent } from '../event/irq-event.ts';
import { IrqSourceChip, msiIrqRoute } from '../routing/irq-route.ts';
import { IOAPIC_DEFAULT_BASE_ADDRESS, IoapicMmioOffset, IoapicRegisterIndex } from '../x86/ioapic/ioapic.ts';
import { RTE_DESTINATION_SHIFT, RTE_MASKED, RTE_TRIGGER_LEVEL } from '../x86/ioapic/redirection-entry.ts';
import { Bus, IO_ADDRESS_LIMIT, MMIO_ADDRESS_LIMIT } from './bus.ts';
import { IrqAllocator } from './irq-allocator.ts';
import {
  GuestLock,
  PIC_IRQS_PER_CHIP,
  SourceKind,
  StressControl,
  msiAddressFor,
  type StressDeviceData,
  type StressDeviceReport,
  type StressSource,
} from './stress-plan.fixture.ts';
import { UserspaceIrqChip } from './userspace-irq-chip.ts';

/** Chance that an edge signal starts a burst, and the largest burst (signals in a row, one per loop). */
const BURST_PROBABILITY = 0.2;
const MAX_BURST = 3;
/** Work items a level device produces at once, at most. */
const MAX_WORK_BATCH = 3;
/** A level line is masked about every this many milliseconds, for this long. */
const MASK_PERIOD_MS = 20;
const MASK_HOLD_MS = 1;
/** One route or destination change every this many milliseconds. */
const ROUTE_CHANGE_INTERVAL_MS = 25;
/** Longest sleep on the device's doorbell (a handler rings it; this bounds a missed ring). */
const IDLE_WAIT_MS = 5;
/** The guest's register accesses come from its driver, running on vCPU 0. */
const GUEST_ACCESSOR = { vcpuIndex: 0 };
const DWORD = 4;
const BYTE = 1;
const PIC_MASTER_DATA = 0x21;
const PIC_SLAVE_DATA = 0xa1;

const data = workerData as StressDeviceData;
const { device, sources, vcpuCount } = data;
const control = new StressControl(data.control, sources.length);
const chip = UserspaceIrqChip.fromDescriptor(data.chip);
const ioBus = new Bus('io', IO_ADDRESS_LIMIT);
const mmioBus = new Bus('mmio', MMIO_ADDRESS_LIMIT);
chip.finalizeDevices(new IrqAllocator(), ioBus, mmioBus);
const guestLock = new GuestLock(data.guestLock);
const ownerDoorbell = Event.fromDescriptor(data.ownerDoorbell);
const random = seededRandom(data.seed);
const failures: string[] = [];

const report = {
  resamples: {} as Record<number, number>,
  heldAtUnmask: {} as Record<number, number>,
  resampledAtUnmask: {} as Record<number, number>,
  masks: 0,
  routeChanges: 0,
  retargets: 0,
};

function bump(record: Record<number, number>, id: number): void {
  record[id] = (record[id] ?? 0) + 1;
}

function randomInt(limit: number): number {
  return Math.floor(random() * limit);
}

// ---------------------------------------------------------------------------------------------
// The guest's register accesses (callers hold the guest lock)
// ---------------------------------------------------------------------------------------------

/** IOREGSEL then IOWIN (82093AA §3.1): one half of a redirection entry. */
function writeRedirectionHalf(pin: number, high: boolean, value: number): void {
  const select = IoapicRegisterIndex.RedirectionTable + 2 * pin + (high ? 1 : 0);
  mmioBus.write(IOAPIC_DEFAULT_BASE_ADDRESS + IoapicMmioOffset.RegisterSelect, DWORD, select, GUEST_ACCESSOR);
  mmioBus.write(IOAPIC_DEFAULT_BASE_ADDRESS + IoapicMmioOffset.Window, DWORD, value, GUEST_ACCESSOR);
}

/** The low half the test programmed for a source's pin: its vector, fixed, physical, its trigger mode. */
function redirectionLow(source: StressSource, masked: boolean): number {
  return source.vector | (source.kind === SourceKind.IoapicLevel ? RTE_TRIGGER_LEVEL : 0) | (masked ? RTE_MASKED : 0);
}

/** OCW1 read-modify-write of one IMR bit. */
function setPicMask(irq: number, masked: boolean): void {
  const port = irq < PIC_IRQS_PER_CHIP ? PIC_MASTER_DATA : PIC_SLAVE_DATA;
  const bit = 1 << irq % PIC_IRQS_PER_CHIP;
  const imr = ioBus.read(port, BYTE, GUEST_ACCESSOR);
  ioBus.write(port, BYTE, masked ? imr | bit : imr & ~bit, GUEST_ACCESSOR);
}

// ---------------------------------------------------------------------------------------------
// Sources
// ---------------------------------------------------------------------------------------------

/** What one look at a source did: nothing, something (look again before sleeping), or signalled its event. */
const Step = { Idle: 0, Progressed: 1, Signalled: 2 } as const;
type Step = (typeof Step)[keyof typeof Step];

interface SourceDriver {
  readonly source: StressSource;
  step(now: number): Step;
  done(): boolean;
  readonly masked: boolean;
}

class EdgeDriver implements SourceDriver {
  readonly masked = false;
  /** The handler count when the device last signalled; -1 before the first signal. */
  private handledAtLastSignal = -1;
  /** Signals of the current burst still to send, one per loop, so some arrive after the owner read the first. */
  private burstLeft = 0;
  private finished = false;

  constructor(
    readonly source: StressSource,
    private readonly event: IrqEdgeEvent,
  ) {}

  step(): Step {
    if (this.finished) return Step.Idle;
    const handled = control.handled(this.source.id);
    if (this.burstLeft > 0) {
      this.burstLeft--;
      return this.signal(handled);
    }
    if (handled <= this.handledAtLastSignal) return Step.Idle;
    if (handled >= this.source.quota) {
      this.finished = true;
      return Step.Progressed;
    }
    if (random() < BURST_PROBABILITY) this.burstLeft = 1 + randomInt(MAX_BURST - 1);
    return this.signal(handled);
  }

  done(): boolean {
    return this.finished;
  }

  /** Signals once; `handled` is the handler count seen just before, which a later delivery will pass. */
  private signal(handled: number): Step {
    this.handledAtLastSignal = handled;
    control.addSignals(this.source.id, 1);
    this.event.trigger();
    return Step.Signalled;
  }
}

class LevelDriver implements SourceDriver {
  masked = false;
  private outstanding = false;
  private produced = 0;
  private nextMaskAt: number;
  private unmaskAt = 0;

  constructor(
    readonly source: StressSource,
    private readonly event: IrqLevelEvent,
    now: number,
  ) {
    this.nextMaskAt = now + random() * MASK_PERIOD_MS;
  }

  step(now: number): Step {
    let step: Step = Step.Idle;
    if (this.event.clearResample()) {
      this.endOutstandingTrigger();
      step = Step.Progressed;
    }
    if (this.produced < this.source.quota && control.work(this.source.id) === 0) {
      const items = Math.min(this.source.quota - this.produced, 1 + randomInt(MAX_WORK_BATCH));
      control.addWork(this.source.id, items);
      this.produced += items;
    }
    if (!this.outstanding && control.work(this.source.id) > 0) {
      this.outstanding = true;
      control.addSignals(this.source.id, 1);
      this.event.trigger();
      step = Step.Signalled;
    }
    this.toggleMask(now);
    return step;
  }

  done(): boolean {
    return this.produced >= this.source.quota && !this.outstanding && !this.masked && control.work(this.source.id) === 0;
  }

  private endOutstandingTrigger(): void {
    this.outstanding = false;
    bump(report.resamples, this.source.id);
  }

  private toggleMask(now: number): void {
    if (this.masked && now >= this.unmaskAt) {
      this.unmask();
      this.nextMaskAt = now + random() * 2 * MASK_PERIOD_MS;
    } else if (!this.masked && now >= this.nextMaskAt && this.produced < this.source.quota) {
      this.mask();
      this.unmaskAt = now + MASK_HOLD_MS;
    }
  }

  private mask(): void {
    guestLock.run(() => {
      if (this.source.picIrq >= 0) setPicMask(this.source.picIrq, true);
      else for (const pin of this.source.ioapicPins) writeRedirectionHalf(pin, false, redirectionLow(this.source, true));
    });
    this.masked = true;
    report.masks++;
  }

  /**
   * Unmasks. An IOAPIC line that was asserted while masked, with no EOI pending, must not be lost:
   * the IOAPIC lowers it at the unmask and the chip signals the resample event (KVM's resampler
   * rule for a level line left pending, x86-controllers.md §2.9, §6.8), so the device, which
   * still has work, triggers again. The 8259A keeps the request in IRR and delivers it once
   * unmasked; the books show that.
   */
  private unmask(): void {
    const { source } = this;
    const heldPins = guestLock.run(() => {
      if (source.picIrq >= 0) {
        setPicMask(source.picIrq, false);
        return 0;
      }
      let held = 0;
      for (const pin of source.ioapicPins) {
        if (chip.ioapic.lineLevel(pin) && !chip.ioapic.remoteIrr(pin)) held++;
        writeRedirectionHalf(pin, false, redirectionLow(source, false));
      }
      return held;
    });
    this.masked = false;
    if (heldPins === 0) return;
    bump(report.heldAtUnmask, source.id);
    if (this.event.clearResample()) {
      bump(report.resampledAtUnmask, source.id);
      this.endOutstandingTrigger();
    } else {
      failures.push(`${source.name}: the unmask found the line held but signalled no resample`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Routes and destinations
// ---------------------------------------------------------------------------------------------

/** Cycles through the changes a guest makes while devices run: MSI affinity, IOAPIC affinity, GSI-to-pin routing. */
class RouteChanger {
  private readonly msiDestination = new Map<number, number>();
  private readonly ioapicDestination = new Map<number, number>();
  private readonly currentPin = new Map<number, number>();
  private nextChange = 0;

  constructor(mine: readonly StressSource[]) {
    for (const source of mine) {
      if (source.kind === SourceKind.Msi) this.msiDestination.set(source.id, source.destination);
      if (source.kind === SourceKind.IoapicEdge) {
        this.ioapicDestination.set(source.id, source.destination);
        this.currentPin.set(source.id, 0);
      }
    }
  }

  change(): void {
    const KINDS_OF_CHANGE = 3;
    switch (this.nextChange++ % KINDS_OF_CHANGE) {
      case 0:
        this.retargetMsi();
        break;
      case 1:
        this.retargetIoapicEntries();
        break;
      default:
        this.moveGsiToOtherPin();
    }
  }

  /** MSI affinity: the next vCPU. Device 0 rewrites the whole table (setIrqRoutes), the others add one route (routeIrq). */
  private retargetMsi(): void {
    const source = this.pick(this.msiDestination);
    if (source === undefined) return;
    const destination = ((this.msiDestination.get(source.id) ?? 0) + 1) % vcpuCount;
    this.msiDestination.set(source.id, destination);
    const route = msiIrqRoute(source.gsi, msiAddressFor(destination), source.vector);
    if (device === 0) chip.setIrqRoutes(chip.routes().map((existing) => (existing.gsi === source.gsi ? route : existing)));
    else chip.routeIrq(route);
    report.routeChanges++;
  }

  /** IOAPIC affinity: every pin the source may use gets the next vCPU as destination. */
  private retargetIoapicEntries(): void {
    const source = this.pick(this.ioapicDestination);
    if (source === undefined) return;
    const destination = ((this.ioapicDestination.get(source.id) ?? 0) + 1) % vcpuCount;
    this.ioapicDestination.set(source.id, destination);
    guestLock.run(() => {
      for (const pin of source.ioapicPins) writeRedirectionHalf(pin, true, destination << RTE_DESTINATION_SHIFT);
    });
    report.retargets++;
  }

  /** Routing: an edge GSI that has two identically programmed pins moves to the other one. */
  private moveGsiToOtherPin(): void {
    const movable = new Map([...this.currentPin].filter(([id]) => (sources[id]?.ioapicPins.length ?? 0) > 1));
    const source = this.pick(movable);
    if (source === undefined) return;
    const next = ((this.currentPin.get(source.id) ?? 0) + 1) % source.ioapicPins.length;
    this.currentPin.set(source.id, next);
    chip.routeIrq({ gsi: source.gsi, source: { kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: source.ioapicPins[next] ?? 0 } });
    report.routeChanges++;
  }

  private pick(candidates: ReadonlyMap<number, number>): StressSource | undefined {
    const ids = [...candidates.keys()];
    return sources[ids[randomInt(ids.length)] ?? -1];
  }
}

// ---------------------------------------------------------------------------------------------
// The loop
// ---------------------------------------------------------------------------------------------

function driverFor(source: StressSource, now: number): SourceDriver {
  const descriptor = data.events[source.id];
  if (descriptor === undefined) throw new Error(`no event for ${source.name}`);
  if (descriptor.kind === 'irq-level-event') return new LevelDriver(source, IrqLevelEvent.fromDescriptor(descriptor), now);
  return new EdgeDriver(source, IrqEdgeEvent.fromDescriptor(descriptor));
}

const mine = sources.filter((source) => source.device === device);
const drivers = mine.map((source) => driverFor(source, performance.now()));
const routeChanger = new RouteChanger(mine);
let nextRouteChange = performance.now();
let loops = 0;
while (!control.aborted()) {
  loops++;
  const generation = control.deviceGeneration(device);
  const now = performance.now();
  let loopStep: Step = Step.Idle;
  for (const driver of drivers) loopStep = Math.max(loopStep, driver.step(now)) as Step;
  if (loopStep === Step.Signalled) ownerDoorbell.signal();
  if (drivers.every((driver) => driver.done())) break;
  if (now >= nextRouteChange) {
    routeChanger.change();
    nextRouteChange = now + ROUTE_CHANGE_INTERVAL_MS;
  }
  if (loopStep === Step.Idle) control.waitDevice(device, generation, drivers.some((driver) => driver.masked) ? MASK_HOLD_MS : IDLE_WAIT_MS);
}

parentPort?.postMessage({ device, ...report, loops, failures } satisfies StressDeviceReport);
