/**
 * The PC's 8259A pair with ELCR (x86-controllers.md §1): master on ports 0x20/0x21, slave on
 * 0xA0/0xA1 with its INT output wired to master IR2, and the chipset's edge/level control
 * registers on 0x4D0/0x4D1. The master's INT output is the CPU's INTR line (LINT0 of the BSP in
 * an APIC system, §3.14); the local APIC reads it through `ExtIntController`.
 *
 * State: `allocateStateWords(MODEL_WORDS)`, an Int32Array over a SharedArrayBuffer:
 *
 *   word    meaning
 *   0–1     the lock (src/base/shared-state.ts)
 *   2–18    master chip, layout in pic-chip.ts
 *   19–35   slave chip, same layout
 *   36      outputLevel: 0/1, the master's INT output; read without the lock (Atomics.load)
 *   37–42   guest-visible counters, in `COUNTER_NAMES` order (unsigned, wrapping):
 *             ignoredAccesses       non-byte access, or a port the PIC does not decode
 *             reservedBitWrites     a 1 written to a reserved or forced-edge bit (ICW4 7:5, OCW3 7, ELCR)
 *             unsupportedModes      ICW4 in MCS-80/85 mode, or an ICW3 other than the PC cascade
 *             spuriousAcknowledges  INTA with no request: the IR7 (or slave IR7 = IRQ15) vector
 *             coalescedRequests     an assert that added no request (already latched / line already high)
 *             maskedRequests        an assert on a pin masked in IMR (held in IRR until unmasked)
 *
 * Every operation takes the lock, changes the chips, recomputes the cascade and the output, and
 * releases it; only then are listeners called (they may call back into the PIC). The PIC is the
 * outermost lock (PIC → IOAPIC → LAPIC) and calls nothing else while holding it.
 */
import { ErrorCode, IrqChipError, check, checkRange } from '../../base/errors.ts';
import { allOnes } from '../../base/integers.ts';
import {
  LOCK_WORDS,
  acquireLock,
  allocateStateWords,
  encodeSnapshot,
  releaseLock,
  restoreSnapshot,
  withLock,
} from '../../base/shared-state.ts';
import type { ExtIntController } from '../interrupt-message.ts';
import {
  CASCADE_PIN,
  CHIP_WORDS,
  ChipWord,
  type ChipRole,
  type GuestErrorCounters,
  InitState,
  NO_IRQ,
  PendingNotifications,
  Pic8259Chip,
} from './pic-chip.ts';

/** Which chip of the pair, for the observability accessors. */
export const PicChip = { Master: 0, Slave: 1 } as const;
export type PicChip = (typeof PicChip)[keyof typeof PicChip];

/** The I/O ports the pair decodes (§1.1). */
export const PicPort = {
  MasterCommand: 0x20,
  MasterData: 0x21,
  SlaveCommand: 0xa0,
  SlaveData: 0xa1,
  MasterElcr: 0x4d0,
  SlaveElcr: 0x4d1,
} as const;

/** ISA IRQs 0–7 on the master, 8–15 on the slave. */
export const PIC_IRQS = 16;
const MAX_IRQ = PIC_IRQS - 1;
const SLAVE_IRQ_OFFSET = 8;
const PIN_MASK = 0x07;
const MAX_PORT = 0xffff;
/** The port address bit that is the 8259A's A0 input (command vs data register). */
const A0 = 0x01;
/** The only access size the 8259A and ELCR decode (§1.1). */
const BYTE_ACCESS = 1;

const MASTER_ROLE: ChipRole = { irqOffset: 0, elcrWritable: 0xf8, isMaster: true, expectedIcw3: 1 << CASCADE_PIN };
const SLAVE_ROLE: ChipRole = { irqOffset: SLAVE_IRQ_OFFSET, elcrWritable: 0xde, isMaster: false, expectedIcw3: CASCADE_PIN };

const MASTER_BASE = LOCK_WORDS;
const SLAVE_BASE = MASTER_BASE + CHIP_WORDS;
const OUTPUT_LEVEL = SLAVE_BASE + CHIP_WORDS;
const COUNTERS_BASE = OUTPUT_LEVEL + 1;

const COUNTER_NAMES = [
  'ignoredAccesses',
  'reservedBitWrites',
  'unsupportedModes',
  'spuriousAcknowledges',
  'coalescedRequests',
  'maskedRequests',
] as const;
export type PicCounterName = (typeof COUNTER_NAMES)[number];
const Counter = {
  IgnoredAccesses: 0,
  ReservedBitWrites: 1,
  UnsupportedModes: 2,
  SpuriousAcknowledges: 3,
  CoalescedRequests: 4,
  MaskedRequests: 5,
} as const;
type Counter = (typeof Counter)[keyof typeof Counter];

/** Model words after the lock (what a snapshot holds). */
const MODEL_WORDS = COUNTERS_BASE + COUNTER_NAMES.length - LOCK_WORDS;
const STATE_BYTES = (LOCK_WORDS + MODEL_WORDS) * Int32Array.BYTES_PER_ELEMENT;

const SNAPSHOT_KIND = 'PIC2';
const SNAPSHOT_LAYOUT_VERSION = 1;
const DESCRIPTOR_KIND = 'pic-pair';

/** Serialisable handle on a pair's state, for `postMessage` to another thread. */
export interface PicPairDescriptor {
  readonly kind: typeof DESCRIPTOR_KIND;
  readonly buffer: SharedArrayBuffer;
}

/**
 * Called when ISA IRQ `irq` is acknowledged (§1.10): its ISR bit was cleared by an EOI, by AEOI at
 * INTA, or by ICW1/reset, or ICW1/reset dropped its pending edge request.
 */
export type PicAckListener = (irq: number) => void;
/** Called when the master's INT output differs from the level this listener last heard. */
export type PicOutputListener = (level: boolean) => void;
/** Called for each IRQ whose IMR bit changed (§5.11 mask notifiers). */
export type PicMaskListener = (irq: number, masked: boolean) => void;

/** One chip's registers, for tests and observability. */
export interface PicChipRegisters {
  readonly irr: number;
  readonly imr: number;
  readonly isr: number;
  /** Input line levels as last sampled (the edge detector). */
  readonly lastIrr: number;
  readonly priorityAdd: number;
  readonly irqBase: number;
  /** OCW3 read-register select: a command-port read returns ISR (else IRR). */
  readonly readsIsr: boolean;
  readonly pollArmed: boolean;
  readonly specialMask: boolean;
  readonly initState: InitState;
  readonly icw4Expected: boolean;
  readonly singleMode: boolean;
  readonly autoEoi: boolean;
  readonly rotateOnAutoEoi: boolean;
  readonly specialFullyNested: boolean;
  readonly elcr: number;
  readonly levelTriggeredMode: boolean;
}

/** Guest-error counters kept in the state words; atomic so no lock is needed to count. */
class CounterWords implements GuestErrorCounters {
  constructor(private readonly words: Int32Array) {}

  increment(counter: Counter): void {
    Atomics.add(this.words, COUNTERS_BASE + counter, 1);
  }

  reservedBitWrite(): void {
    this.increment(Counter.ReservedBitWrites);
  }

  unsupportedMode(): void {
    this.increment(Counter.UnsupportedModes);
  }

  values(): Readonly<Record<PicCounterName, number>> {
    const values = {} as Record<PicCounterName, number>;
    COUNTER_NAMES.forEach((name, index) => {
      values[name] = Atomics.load(this.words, COUNTERS_BASE + index) >>> 0;
    });
    return values;
  }
}

/** Validates a caller's port access: the port exists on x86 and the size is 1, 2 or 4 bytes. */
function checkPortAccess(port: number, size: number): void {
  checkRange(port, 0, MAX_PORT, 'port');
  check(size === 1 || size === 2 || size === 4, ErrorCode.EINVAL, 'access size must be 1, 2 or 4 bytes');
}

function checkIrq(irq: number): void {
  checkRange(irq, 0, MAX_IRQ, 'irq');
}

function isElcrPort(port: number): boolean {
  return port === PicPort.MasterElcr || port === PicPort.SlaveElcr;
}

export class PicPair implements ExtIntController {
  private readonly words: Int32Array;
  private readonly master: Pic8259Chip;
  private readonly slave: Pic8259Chip;
  private readonly counterWords: CounterWords;
  private readonly pending = new PendingNotifications();
  private readonly ackListeners: (PicAckListener | undefined)[] = new Array<PicAckListener | undefined>(PIC_IRQS).fill(undefined);
  private outputListener: PicOutputListener | undefined;
  private maskListener: PicMaskListener | undefined;
  /**
   * The output level `outputListener` last heard about, as this view knows it. Each outermost
   * operation starts by taking the shared level as reported: another view (another thread) that
   * changed the output tells its own listener, so this view reports only the changes its own
   * operations make. Without that resync a view whose last report was "high" stays silent about
   * its next rise when another view lowered the line meanwhile (a vCPU thread's INTA), and the
   * halted vCPU behind LINT0 is not woken.
   */
  private reportedOutput = false;
  /** True while this view runs its listeners: operations they make are nested in the outer one. */
  private notifying = false;
  /** An operation of this view deferred its output update until its acknowledge listeners ran. */
  private outputUpdateOwed = false;
  /** IMR of both chips (bit n = IRQ n) when the pending mask flips were gathered. */
  private maskedIrqsAtFlip = 0;

  private constructor(words: Int32Array) {
    this.words = words;
    this.counterWords = new CounterWords(this.words);
    this.master = new Pic8259Chip(this.words, MASTER_BASE, MASTER_ROLE, this.pending, this.counterWords);
    this.slave = new Pic8259Chip(this.words, SLAVE_BASE, SLAVE_ROLE, this.pending, this.counterWords);
  }

  /** A new pair at power-on state (all registers 0, every IRQ unmasked). */
  static create(): PicPair {
    return new PicPair(allocateStateWords(MODEL_WORDS));
  }

  /** Another view over the same pair, e.g. in a worker that received `descriptor()`. */
  static fromState(descriptor: PicPairDescriptor): PicPair {
    return new PicPair(PicPair.wordsOf(descriptor));
  }

  private static wordsOf(descriptor: PicPairDescriptor): Int32Array {
    // Descriptors arrive through postMessage, so the type is a claim to check, not a fact.
    const kind: unknown = descriptor.kind;
    check(kind === DESCRIPTOR_KIND, ErrorCode.EINVAL, `state descriptor of kind '${String(kind)}' is not a PIC pair`);
    check(
      descriptor.buffer instanceof SharedArrayBuffer && descriptor.buffer.byteLength === STATE_BYTES,
      ErrorCode.EINVAL,
      `PIC pair state must be a SharedArrayBuffer of ${STATE_BYTES} bytes`,
    );
    return new Int32Array(descriptor.buffer);
  }

  descriptor(): PicPairDescriptor {
    return { kind: DESCRIPTOR_KIND, buffer: this.words.buffer as SharedArrayBuffer };
  }

  // ------------------------------------------------------------------------------------------
  // Device side
  // ------------------------------------------------------------------------------------------

  /**
   * Drives ISA IRQ `irq` (0–7 master, 8–15 slave) to `level` (true = asserted) (§1.3). Returns
   * KVM's convention: -1 masked (the request is still latched and waits in IRR), 0 coalesced
   * (the assert added no request), 1 raised (and for every de-assert).
   */
  setIrq(irq: number, level: boolean): number {
    checkIrq(irq);
    check(typeof level === 'boolean', ErrorCode.EINVAL, 'level must be a boolean');
    this.beginUpdate();
    try {
      const result = this.chipOfIrq(irq).setInput(irq & PIN_MASK, level);
      if (level && result < 0) this.counterWords.increment(Counter.MaskedRequests);
      else if (level && result === 0) this.counterWords.increment(Counter.CoalescedRequests);
      this.settleOutput();
      return result;
    } finally {
      this.endUpdate();
    }
  }

  // ------------------------------------------------------------------------------------------
  // CPU side (ExtIntController)
  // ------------------------------------------------------------------------------------------

  /** Whether the master's INT output is high. Lock-free: a single atomic load. */
  outputLevel(): boolean {
    return Atomics.load(this.words, OUTPUT_LEVEL) !== 0;
  }

  /**
   * The INTA cycle (§1.9): the master's winning request goes into service; if it is IR2 the
   * slave's does too and supplies the vector. With no request the chip answers with its IR7
   * vector and changes no ISR bit (spurious IRQ7, or IRQ15 after master ISR2 was set).
   */
  acknowledge(): number {
    this.beginUpdate();
    try {
      let chip = this.master;
      let pin = chip.interruptAcknowledge();
      if (pin === CASCADE_PIN) {
        chip = this.slave;
        pin = chip.interruptAcknowledge();
      }
      if (pin === NO_IRQ) this.counterWords.increment(Counter.SpuriousAcknowledges);
      this.settleOutput();
      return chip.vectorFor(pin);
    } finally {
      this.endUpdate();
    }
  }

  // ------------------------------------------------------------------------------------------
  // Guest port I/O
  // ------------------------------------------------------------------------------------------

  /**
   * A guest `in` from `port` of `size` bytes. Only byte reads of the six PIC ports mean anything
   * (§1.1); any other access is counted and reads as a floating bus (all ones).
   */
  readPort(port: number, size: number): number {
    checkPortAccess(port, size);
    const chip = this.chipOfPort(port);
    if (chip === undefined || size !== BYTE_ACCESS) {
      this.counterWords.increment(Counter.IgnoredAccesses);
      return allOnes(size);
    }
    this.beginUpdate();
    try {
      let value: number;
      if (isElcrPort(port)) value = chip.read(ChipWord.Elcr);
      else if ((port & A0) === 0) value = chip.readCommand();
      else value = chip.readData();
      this.settleOutput();
      return value;
    } finally {
      this.endUpdate();
    }
  }

  /** A guest `out` of `value` to `port` (`size` bytes). Non-byte accesses and unknown ports are counted and ignored. */
  writePort(port: number, size: number, value: number): void {
    checkPortAccess(port, size);
    const valueMask = allOnes(size);
    checkRange(value, 0, valueMask, 'value');
    const chip = this.chipOfPort(port);
    if (chip === undefined || size !== BYTE_ACCESS) {
      this.counterWords.increment(Counter.IgnoredAccesses);
      return;
    }
    this.beginUpdate();
    try {
      if (isElcrPort(port)) chip.writeElcr(value);
      else if ((port & A0) === 0) chip.writeCommand(value);
      else chip.writeData(value);
      this.settleOutput();
    } finally {
      this.endUpdate();
    }
  }

  // ------------------------------------------------------------------------------------------
  // Listeners (per view, not state)
  // ------------------------------------------------------------------------------------------

  /**
   * Sets (or with `undefined` removes) the acknowledge hook of ISA IRQ `irq`, called after the
   * operation that cleared its ISR bit: an EOI command, the INTA under AEOI, or ICW1/reset
   * (which also acknowledge the edge requests they drop). This is where resample events fire.
   */
  setAckListener(irq: number, listener: PicAckListener | undefined): void {
    checkIrq(irq);
    this.ackListeners[irq] = listener;
  }

  /** Sets the output-change listener (LINT0 / vCPU wake-up). It hears a level only when it changes. */
  setOutputListener(listener: PicOutputListener | undefined): void {
    this.outputListener = listener;
    this.reportedOutput = this.outputLevel();
  }

  /** Sets the IMR-change listener, called once per IRQ whose mask bit flipped. */
  setMaskListener(listener: PicMaskListener | undefined): void {
    this.maskListener = listener;
  }

  // ------------------------------------------------------------------------------------------
  // Observability, reset, snapshots
  // ------------------------------------------------------------------------------------------

  registers(chip: PicChip): PicChipRegisters {
    checkRange(chip, PicChip.Master, PicChip.Slave, 'chip');
    const view = chip === PicChip.Master ? this.master : this.slave;
    return withLock(this.words, () => ({
      irr: view.read(ChipWord.Irr),
      imr: view.read(ChipWord.Imr),
      isr: view.read(ChipWord.Isr),
      lastIrr: view.read(ChipWord.LastIrr),
      priorityAdd: view.read(ChipWord.PriorityAdd),
      irqBase: view.read(ChipWord.IrqBase),
      readsIsr: view.read(ChipWord.ReadRegisterSelect) !== 0,
      pollArmed: view.read(ChipWord.PollArmed) !== 0,
      specialMask: view.read(ChipWord.SpecialMask) !== 0,
      initState: view.read(ChipWord.InitState) as InitState,
      icw4Expected: view.read(ChipWord.Icw4Expected) !== 0,
      singleMode: view.read(ChipWord.SingleMode) !== 0,
      autoEoi: view.read(ChipWord.AutoEoi) !== 0,
      rotateOnAutoEoi: view.read(ChipWord.RotateOnAutoEoi) !== 0,
      specialFullyNested: view.read(ChipWord.SpecialFullyNested) !== 0,
      elcr: view.read(ChipWord.Elcr),
      levelTriggeredMode: view.read(ChipWord.LevelTriggeredMode) !== 0,
    }));
  }

  counters(): Readonly<Record<PicCounterName, number>> {
    return this.counterWords.values();
  }

  /**
   * Device reset (§1.2, QEMU `pic_reset`): ELCR cleared and both chips back to power-on state,
   * pending requests dropped (and acknowledged, as for ICW1). Counters are diagnostics, not
   * hardware state, and are kept.
   */
  reset(): void {
    this.beginUpdate();
    try {
      this.master.powerOnReset();
      this.slave.powerOnReset();
      this.settleOutput();
    } finally {
      this.endUpdate();
    }
  }

  /** The state as snapshot bytes, with the output brought up to date first (an update may be owed, `settleOutput`). */
  snapshot(): Uint8Array {
    return withLock(this.words, () => {
      this.updateOutput();
      return encodeSnapshot(SNAPSHOT_KIND, SNAPSHOT_LAYOUT_VERSION, this.words);
    });
  }

  /**
   * Replaces the state with a snapshot's. A truncated, foreign or corrupted snapshot, or one
   * holding an impossible state, throws EINVAL and changes nothing. Like KVM's SET_IRQCHIP it
   * notifies only the output level, not acknowledges or masks.
   */
  restore(bytes: Uint8Array): void {
    const levelBefore = this.outputLevel();
    restoreSnapshot(this.words, bytes, SNAPSHOT_KIND, SNAPSHOT_LAYOUT_VERSION, validateSnapshotPayload);
    this.reportedOutput = levelBefore;
    this.notifyOutput();
  }

  // ------------------------------------------------------------------------------------------
  // Internals
  // ------------------------------------------------------------------------------------------

  private chipOfIrq(irq: number): Pic8259Chip {
    return irq < SLAVE_IRQ_OFFSET ? this.master : this.slave;
  }

  private chipOfPort(port: number): Pic8259Chip | undefined {
    switch (port) {
      case PicPort.MasterCommand:
      case PicPort.MasterData:
      case PicPort.MasterElcr:
        return this.master;
      case PicPort.SlaveCommand:
      case PicPort.SlaveData:
      case PicPort.SlaveElcr:
        return this.slave;
      default:
        return undefined;
    }
  }

  /**
   * The end of every operation: the cascade and the output are brought up to date now, or, when
   * acknowledge listeners are owed, once they all ran (`deliverNotifications`); an operation such
   * a listener makes defers its update to that one too. KVM's order (`pic_clear_isr` runs the ack
   * notifiers before `pic_update_irq`): a listener lowers a resampled level line first, so the
   * slave request that line held is not latched into the master's IR2 (an edge input) and then
   * answered as a spurious IRQ 15, nor the output raised for a request that is already gone.
   */
  private settleOutput(): void {
    if (this.pending.acknowledgedIrqs === 0 && !this.outputUpdateOwed) this.updateOutput();
    else this.outputUpdateOwed = true;
  }

  /** After any change, under the lock: the cascade, then the master's INT output (§1.5). */
  private updateOutput(): void {
    this.master.driveCascadeInput(this.slave.pendingIrq() !== NO_IRQ);
    const output = this.master.pendingIrq() !== NO_IRQ ? 1 : 0;
    if (this.words[OUTPUT_LEVEL] !== output) Atomics.store(this.words, OUTPUT_LEVEL, output);
  }

  // acquireLock/releaseLock rather than withLock: no closure is allocated per interrupt.
  private beginUpdate(): void {
    acquireLock(this.words);
    if (!this.notifying) this.reportedOutput = this.words[OUTPUT_LEVEL] !== 0;
  }

  private endUpdate(): void {
    if (this.pending.maskFlippedIrqs !== 0) {
      this.maskedIrqsAtFlip = this.master.read(ChipWord.Imr) | (this.slave.read(ChipWord.Imr) << SLAVE_IRQ_OFFSET);
    }
    releaseLock(this.words);
    this.deliverNotifications();
  }

  /**
   * Runs the listeners an operation owes, after the lock is released. The pending sets are taken
   * and cleared first, so a listener that calls back into the PIC gathers and delivers its own.
   */
  private deliverNotifications(): void {
    const nested = this.notifying;
    this.notifying = true;
    try {
      this.notifyListeners(!nested);
    } finally {
      this.notifying = nested;
    }
  }

  /**
   * `outermost`: this is not an operation a listener made. Only the outermost pays an owed output
   * update, once every acknowledge listener of the outer operation has run.
   */
  private notifyListeners(outermost: boolean): void {
    const acknowledged = this.pending.acknowledgedIrqs;
    const maskFlipped = this.pending.maskFlippedIrqs;
    const masked = this.maskedIrqsAtFlip;
    this.pending.acknowledgedIrqs = 0;
    this.pending.maskFlippedIrqs = 0;
    try {
      this.notifyAcknowledged(acknowledged);
    } finally {
      if (outermost) this.payOwedOutputUpdate();
    }
    this.notifyMaskFlips(maskFlipped, masked);
    this.notifyOutput();
  }

  private notifyAcknowledged(irqs: number): void {
    for (let irq = 0, pending = irqs; pending !== 0; irq++, pending >>>= 1) {
      if ((pending & 1) !== 0) this.ackListeners[irq]?.(irq);
    }
  }

  /** The output update an operation deferred until its acknowledge listeners ran (`settleOutput`). */
  private payOwedOutputUpdate(): void {
    if (!this.outputUpdateOwed) return;
    this.outputUpdateOwed = false;
    withLock(this.words, () => {
      this.updateOutput();
    });
  }

  private notifyMaskFlips(flipped: number, masked: number): void {
    const maskListener = this.maskListener;
    if (maskListener === undefined) return;
    for (let irq = 0, pending = flipped; pending !== 0; irq++, pending >>>= 1) {
      if ((pending & 1) !== 0) maskListener(irq, ((masked >>> irq) & 1) !== 0);
    }
  }

  /** Tells the output listener the current level if it differs from what it last heard. */
  private notifyOutput(): void {
    if (this.outputListener === undefined) return;
    const level = this.outputLevel();
    if (level === this.reportedOutput) return;
    this.reportedOutput = level;
    this.outputListener(level);
  }
}

// ---------------------------------------------------------------------------------------------
// Snapshot validation
// ---------------------------------------------------------------------------------------------

/** Largest legal value of each chip word whose range is 0..max. */
const CHIP_WORD_MAXIMA: readonly (readonly [ChipWord, number])[] = [
  [ChipWord.Irr, 0xff],
  [ChipWord.Imr, 0xff],
  [ChipWord.Isr, 0xff],
  [ChipWord.LastIrr, 0xff],
  [ChipWord.PriorityAdd, 7],
  [ChipWord.IrqBase, 0xf8],
  [ChipWord.ReadRegisterSelect, 1],
  [ChipWord.PollArmed, 1],
  [ChipWord.SpecialMask, 1],
  [ChipWord.InitState, InitState.ExpectIcw4],
  [ChipWord.Icw4Expected, 1],
  [ChipWord.SingleMode, 1],
  [ChipWord.AutoEoi, 1],
  [ChipWord.RotateOnAutoEoi, 1],
  [ChipWord.SpecialFullyNested, 1],
  [ChipWord.Elcr, 0xff],
  [ChipWord.LevelTriggeredMode, 1],
];

function rejectSnapshot(why: string): never {
  throw new IrqChipError(ErrorCode.EINVAL, `PIC snapshot holds an impossible state: ${why}`);
}

function validateChipWords(chip: Pic8259Chip, name: string): void {
  for (const [field, maximum] of CHIP_WORD_MAXIMA) {
    const value = chip.read(field);
    if (value < 0 || value > maximum) rejectSnapshot(`${name} word ${field} = ${value} exceeds ${maximum}`);
  }
  if ((chip.read(ChipWord.IrqBase) & PIN_MASK) !== 0) rejectSnapshot(`${name} vector base is not a multiple of 8`);
  if ((chip.read(ChipWord.Elcr) & ~chip.role.elcrWritable) !== 0) rejectSnapshot(`${name} ELCR sets a forced-edge bit`);
}

/**
 * Semantic check of a decoded payload (model words, no lock): every field in range, and the
 * state a fixed point of the output update that ends every operation (cascade latched, output
 * word equal to the master's request).
 */
function validateSnapshotPayload(payload: Int32Array): void {
  const words = new Int32Array(LOCK_WORDS + payload.length);
  words.set(payload, LOCK_WORDS);
  const ignoreErrors: GuestErrorCounters = { reservedBitWrite: () => undefined, unsupportedMode: () => undefined };
  const notifications = new PendingNotifications();
  const master = new Pic8259Chip(words, MASTER_BASE, MASTER_ROLE, notifications, ignoreErrors);
  const slave = new Pic8259Chip(words, SLAVE_BASE, SLAVE_ROLE, notifications, ignoreErrors);
  validateChipWords(master, 'master');
  validateChipWords(slave, 'slave');
  const savedOutput = words[OUTPUT_LEVEL];
  if (savedOutput !== 0 && savedOutput !== 1) rejectSnapshot(`output level ${String(savedOutput)}`);
  const masterIrr = master.read(ChipWord.Irr);
  master.driveCascadeInput(slave.pendingIrq() !== NO_IRQ);
  if (master.read(ChipWord.Irr) !== masterIrr) rejectSnapshot('slave request not reflected on master IR2');
  if ((master.pendingIrq() !== NO_IRQ ? 1 : 0) !== savedOutput) rejectSnapshot('output level disagrees with the requests');
}
