/**
 * The plan shared by the chip's multi-worker stress test (userspace-irq-chip.stress.test.ts) and
 * its workers (stress-device.fixture.ts, stress-vcpu.fixture.ts): the interrupt sources, the
 * shared control words through which the threads keep their books, and the guest's lock.
 *
 * Every source has a vector of its own, so a vCPU's handler knows which source an interrupt came
 * from, and at most a few of its interrupts are in flight at once (see the device fixture), so the
 * run is many sources in parallel rather than one source fast.
 */

import { LOCK_WORDS, allocateStateWords, withLock } from '../base/shared-state.ts';
import type { IrqEdgeEventDescriptor, IrqLevelEventDescriptor } from '../event/irq-event.ts';
import type { EventDescriptor } from '../event/event.ts';
import type { SimGuest } from './sim-vcpu.ts';
import type { UserspaceIrqChipDescriptor } from './userspace-irq-chip.ts';

export const SourceKind = {
  /** An edge event on a GSI routed to an IOAPIC pin programmed edge-triggered. */
  IoapicEdge: 'ioapic-edge',
  /** A level event (with resample) on a GSI routed to a level-triggered IOAPIC pin. */
  IoapicLevel: 'ioapic-level',
  /** An edge event on a GSI routed to an 8259A pin (ELCR edge). */
  PicEdge: 'pic-edge',
  /** A level event on a GSI routed to an 8259A pin marked level in the ELCR. */
  PicLevel: 'pic-level',
  /** An edge event on a GSI (24 and up) with an MSI route. */
  Msi: 'msi',
  /** A fixed IPI one vCPU sends another through its ICR. */
  Ipi: 'ipi',
} as const;
export type SourceKind = (typeof SourceKind)[keyof typeof SourceKind];

export interface StressSource {
  readonly id: number;
  readonly name: string;
  readonly kind: SourceKind;
  readonly vector: number;
  /**
   * Edge and MSI sources: deliveries after which the device stops signalling. Level sources: work
   * items the device produces (the guest's handler takes one per interrupt). IPIs: how many the
   * sender sends.
   */
  readonly quota: number;
  /** The GSI the source's event is registered on; -1 for an IPI. */
  readonly gsi: number;
  /** IOAPIC pins the GSI may be routed to (the first at start; the device moves it among them). */
  readonly ioapicPins: readonly number[];
  /** ISA IRQ of a PIC source; -1 otherwise. */
  readonly picIrq: number;
  /** The vCPU the source is first sent to; for a PIC source always 0 (LINT0 of the BSP). */
  readonly destination: number;
  /** The device worker that drives the source; -1 for an IPI. */
  readonly device: number;
  /** IPIs: the sending vCPU; -1 otherwise. */
  readonly sender: number;
  /** IPIs: the IPI that answers this one (for a request) or that this one answers (for a reply); -1 otherwise. */
  readonly partner: number;
  /** IPIs: true for a request (sent again when its reply arrives, until the quota), false for a reply. */
  readonly isRequest: boolean;
}

export type StressEventDescriptor = IrqEdgeEventDescriptor | IrqLevelEventDescriptor;

/** What every worker receives besides its own chip view. */
export interface StressShared {
  readonly sources: readonly StressSource[];
  readonly deviceCount: number;
  readonly vcpuCount: number;
  readonly control: SharedArrayBuffer;
}

export interface StressDeviceData extends StressShared {
  readonly chip: UserspaceIrqChipDescriptor;
  readonly device: number;
  /** The events of the sources this device drives, by source id. */
  readonly events: Readonly<Record<number, StressEventDescriptor>>;
  readonly guestLock: SharedArrayBuffer;
  /** Signalled after each batch of triggers: the owner's stand-in for epoll readiness on the event tokens. */
  readonly ownerDoorbell: EventDescriptor;
  readonly seed: number;
}

export interface StressVcpuData extends StressShared {
  readonly chip: UserspaceIrqChipDescriptor;
  readonly vcpuId: number;
}

/** A device worker's account, posted when all its sources are done. */
export interface StressDeviceReport {
  readonly device: number;
  /** Level sources: resample events the device consumed, by source id. */
  readonly resamples: Readonly<Record<number, number>>;
  /** IOAPIC level sources: unmasks that found the line held (asserted while masked, no EOI pending). */
  readonly heldAtUnmask: Readonly<Record<number, number>>;
  /** Of those, how many signalled the resample event during the unmask itself (must be all). */
  readonly resampledAtUnmask: Readonly<Record<number, number>>;
  readonly masks: number;
  readonly routeChanges: number;
  readonly retargets: number;
  readonly loops: number;
  readonly failures: readonly string[];
}

/** A vCPU worker's account, posted after the stop. */
export interface StressVcpuReport {
  readonly vcpuId: number;
  readonly taken: number;
  readonly runnableWaits: number;
  readonly interruptedWaits: number;
  /** 8259A acknowledges with nothing requesting (datasheet "spurious"): the master's IR7 vector, the guest sends no EOI. */
  readonly spuriousIrq7: number;
  /** The slave's IR7 vector after the master took IR2 (the guest EOIs the master only). */
  readonly spuriousIrq15: number;
  readonly failures: readonly string[];
}

// ---------------------------------------------------------------------------------------------
// Shared control words (Int32Array over a SharedArrayBuffer):
//   0                      stop: 1 when the owner has seen every book close; vCPUs leave at their next wait
//   1                      abort: 1 when the test failed or ran out of time; everyone leaves
//   2 + 3s                 source s: interrupts its handler took
//   3 + 3s                 source s: signals (edge: triggers, level: triggers, IPI: sends)
//   4 + 3s                 source s (level): work items produced and not yet taken by the guest
//   2 + 3S + 2d            device d: doorbell generation, bumped by a handler that took one of its interrupts
//   3 + 3S + 2d            device d: threads sleeping on its doorbell
// ---------------------------------------------------------------------------------------------

const STOP = 0;
const ABORT = 1;
const FIRST_SOURCE_WORD = 2;
const WORDS_PER_SOURCE = 3;
const HANDLED = 0;
const SIGNALS = 1;
const WORK = 2;
const WORDS_PER_DEVICE = 2;

export function allocateControl(sourceCount: number, deviceCount: number): SharedArrayBuffer {
  const words = FIRST_SOURCE_WORD + WORDS_PER_SOURCE * sourceCount + WORDS_PER_DEVICE * deviceCount;
  return new SharedArrayBuffer(words * Int32Array.BYTES_PER_ELEMENT);
}

/** The threads' shared books and signals. */
export class StressControl {
  private readonly words: Int32Array;
  private readonly firstDeviceWord: number;

  constructor(buffer: SharedArrayBuffer, sourceCount: number) {
    this.words = new Int32Array(buffer);
    this.firstDeviceWord = FIRST_SOURCE_WORD + WORDS_PER_SOURCE * sourceCount;
  }

  stopRequested(): boolean {
    return Atomics.load(this.words, STOP) !== 0;
  }

  requestStop(): void {
    Atomics.store(this.words, STOP, 1);
  }

  aborted(): boolean {
    return Atomics.load(this.words, ABORT) !== 0;
  }

  abort(): void {
    Atomics.store(this.words, ABORT, 1);
  }

  handled(source: number): number {
    return Atomics.load(this.words, this.sourceWord(source, HANDLED));
  }

  addHandled(source: number): void {
    Atomics.add(this.words, this.sourceWord(source, HANDLED), 1);
  }

  signals(source: number): number {
    return Atomics.load(this.words, this.sourceWord(source, SIGNALS));
  }

  addSignals(source: number, count: number): void {
    Atomics.add(this.words, this.sourceWord(source, SIGNALS), count);
  }

  work(source: number): number {
    return Atomics.load(this.words, this.sourceWord(source, WORK));
  }

  addWork(source: number, items: number): void {
    Atomics.add(this.words, this.sourceWord(source, WORK), items);
  }

  /** The guest's handler takes one work item; returns how many there were before (0: an interrupt with no work). */
  takeWork(source: number): number {
    const at = this.sourceWord(source, WORK);
    for (;;) {
      const before = Atomics.load(this.words, at);
      if (before <= 0) return before;
      if (Atomics.compareExchange(this.words, at, before, before - 1) === before) return before;
    }
  }

  deviceGeneration(device: number): number {
    return Atomics.load(this.words, this.firstDeviceWord + WORDS_PER_DEVICE * device);
  }

  /** Wakes device `device` if it sleeps (a handler took one of its interrupts). */
  ringDevice(device: number): void {
    const at = this.firstDeviceWord + WORDS_PER_DEVICE * device;
    Atomics.add(this.words, at, 1);
    if (Atomics.load(this.words, at + 1) !== 0) Atomics.notify(this.words, at);
  }

  /** Sleeps (worker threads) until device `device`'s doorbell moves past `generation`, at most `timeoutMs`. */
  waitDevice(device: number, generation: number, timeoutMs: number): void {
    const at = this.firstDeviceWord + WORDS_PER_DEVICE * device;
    Atomics.add(this.words, at + 1, 1);
    Atomics.wait(this.words, at, generation, timeoutMs);
    Atomics.sub(this.words, at + 1, 1);
  }

  private sourceWord(source: number, field: number): number {
    return FIRST_SOURCE_WORD + WORDS_PER_SOURCE * source + field;
  }
}

/**
 * The guest's lock around its multi-access register sequences: IOREGSEL then IOWIN is two
 * accesses to one shared selector, and an IMR update is a read-modify-write, so a guest serialises
 * them (Linux's ioapic_lock and i8259A_lock). Without it two device threads would program each
 * other's pins.
 */
export class GuestLock {
  private readonly words: Int32Array;

  constructor(buffer: SharedArrayBuffer = allocateStateWords(0).buffer as SharedArrayBuffer) {
    this.words = new Int32Array(buffer, 0, LOCK_WORDS);
  }

  get buffer(): SharedArrayBuffer {
    return this.words.buffer as SharedArrayBuffer;
  }

  run<T>(body: () => T): T {
    return withLock(this.words, body);
  }
}

// ---------------------------------------------------------------------------------------------
// Guest-visible encodings the workers share
// ---------------------------------------------------------------------------------------------

/** MSI address for a fixed, physical-destination message to vCPU `destination` (SDM vol. 3 §11.11.1). */
export function msiAddressFor(destination: number): bigint {
  const MSI_ADDRESS_BASE = 0xfee00000n;
  const MSI_DESTINATION_ID_SHIFT = 12n;
  return MSI_ADDRESS_BASE | (BigInt(destination) << MSI_DESTINATION_ID_SHIFT);
}

/** Level "assert": the SDM asks it of every IPI but an INIT de-assert (SDM vol. 3 §11.6.1). */
const ICR_LEVEL_ASSERT = 1 << 14;

/** The guest sends a fixed, edge, physical-destination IPI. */
export function sendFixedIpi(guest: SimGuest, destination: number, vector: number): void {
  guest.sendIpi(destination, ICR_LEVEL_ASSERT | vector);
}

/** The 8259A vector bases the guest programs (ICW2), as the test machine does. */
export const PIC_MASTER_VECTOR_BASE = 0x20;
export const PIC_SLAVE_VECTOR_BASE = 0x28;
export const PIC_IRQS_PER_CHIP = 8;

export function picVectorOf(irq: number): number {
  return irq < PIC_IRQS_PER_CHIP ? PIC_MASTER_VECTOR_BASE + irq : PIC_SLAVE_VECTOR_BASE + irq - PIC_IRQS_PER_CHIP;
}

// ---------------------------------------------------------------------------------------------
// The sources
// ---------------------------------------------------------------------------------------------

export interface StressPlanOptions {
  readonly vcpuCount: number;
  readonly deviceCount: number;
  readonly msiSources: number;
  /** IPI request/reply pairs per ordered pair of vCPUs. */
  readonly ipiChainsPerVcpuPair: number;
  /** Quota of each source, by kind (see `StressSource.quota`). */
  readonly quotas: Readonly<Record<SourceKind, number>>;
}

/** IOAPIC edge sources: GSI and the pins it may be routed to (two pins: the device moves it between them). */
const IOAPIC_EDGE_SOURCES: readonly (readonly [gsi: number, pins: readonly number[]])[] = [
  [0, [0]],
  [1, [1]],
  [7, [7]],
  [13, [13]],
  [14, [14]],
  [22, [22, 15]],
  [23, [23, 2]],
];
const IOAPIC_LEVEL_GSIS = [16, 17, 18, 19, 20, 21];
/** 8259A IRQs: 2 is the cascade, 7 and 15 carry the spurious vectors, 8 and 13 cannot be level (ELCR). */
const PIC_EDGE_IRQS = [3, 4, 5, 9, 10];
const PIC_LEVEL_IRQS = [6, 11, 12];
/** The first GSI above the IOAPIC's pins: where MSI routes go (crosvm allocates them from there). */
const FIRST_MSI_GSI = 24;
/** Vectors below 0x30 are the 8259A's (0x20–0x2f) and the exceptions'. */
const FIRST_APIC_VECTOR = 0x30;
const LAST_APIC_VECTOR = 0xfe;

/** Every source of a run: IOAPIC edge and level, PIC edge and level, MSI, and IPI request/reply chains. */
export function planSources(options: StressPlanOptions): StressSource[] {
  const sources: StressSource[] = [];
  let nextVector = FIRST_APIC_VECTOR;
  let deviceSources = 0;
  const add = (fields: Omit<StressSource, 'id' | 'quota' | 'device' | 'sender' | 'partner' | 'isRequest'>): void => {
    const id = sources.length;
    sources.push({ ...fields, id, quota: options.quotas[fields.kind], device: deviceSources++ % options.deviceCount, sender: -1, partner: -1, isRequest: false });
  };
  const apicVector = (): number => {
    if (nextVector > LAST_APIC_VECTOR) throw new RangeError('the plan needs more vectors than the APIC has');
    return nextVector++;
  };
  const spread = (index: number): number => index % options.vcpuCount;
  IOAPIC_EDGE_SOURCES.forEach(([gsi, pins], index) => {
    add({ name: `ioapic-edge gsi ${gsi}`, kind: SourceKind.IoapicEdge, vector: apicVector(), gsi, ioapicPins: pins, picIrq: -1, destination: spread(index) });
  });
  IOAPIC_LEVEL_GSIS.forEach((gsi, index) => {
    add({ name: `ioapic-level gsi ${gsi}`, kind: SourceKind.IoapicLevel, vector: apicVector(), gsi, ioapicPins: [gsi], picIrq: -1, destination: spread(index + 1) });
  });
  for (const irq of PIC_EDGE_IRQS) {
    add({ name: `pic-edge irq ${irq}`, kind: SourceKind.PicEdge, vector: picVectorOf(irq), gsi: irq, ioapicPins: [], picIrq: irq, destination: 0 });
  }
  for (const irq of PIC_LEVEL_IRQS) {
    add({ name: `pic-level irq ${irq}`, kind: SourceKind.PicLevel, vector: picVectorOf(irq), gsi: irq, ioapicPins: [], picIrq: irq, destination: 0 });
  }
  for (let index = 0; index < options.msiSources; index++) {
    const gsi = FIRST_MSI_GSI + index;
    add({ name: `msi gsi ${gsi}`, kind: SourceKind.Msi, vector: apicVector(), gsi, ioapicPins: [], picIrq: -1, destination: spread(index) });
  }
  for (let sender = 0; sender < options.vcpuCount; sender++) {
    for (let receiver = 0; receiver < options.vcpuCount; receiver++) {
      if (sender === receiver) continue;
      for (let chain = 0; chain < options.ipiChainsPerVcpuPair; chain++) {
        const request = sources.length;
        const ipi = (from: number, to: number, partner: number, isRequest: boolean): StressSource => ({
          id: sources.length,
          name: `ipi ${from}→${to} ${isRequest ? 'request' : 'reply'} ${chain}`,
          kind: SourceKind.Ipi,
          vector: apicVector(),
          quota: options.quotas.ipi,
          gsi: -1,
          ioapicPins: [],
          picIrq: -1,
          destination: to,
          device: -1,
          sender: from,
          partner,
          isRequest,
        });
        sources.push(ipi(sender, receiver, request + 1, true));
        sources.push(ipi(receiver, sender, request, false));
      }
    }
  }
  return sources;
}

export function isLevelKind(kind: SourceKind): boolean {
  return kind === SourceKind.IoapicLevel || kind === SourceKind.PicLevel;
}
