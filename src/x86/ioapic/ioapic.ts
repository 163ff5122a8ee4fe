/**
 * The I/O APIC: Intel 82093AA (version 0x11) or the ICH-style variant with an EOI register
 * (version 0x20). Behaviour follows shared/spec/x86-controllers.md §2 and its Recommendations;
 * section numbers below refer to that file unless a datasheet is named.
 *
 * Input pins 0–23 carry device lines; each pin has a 64-bit redirection entry (RTE, see
 * `redirection-entry.ts`) that turns an assertion into an `InterruptMessage` for the APIC bus.
 * The guest reaches the registers indirectly: it writes a register index to IOREGSEL and reads or
 * writes the register through IOWIN.
 *
 * State layout: 32-bit words in a SharedArrayBuffer (docs/architecture.md, decision 1). Words 0–1
 * are the lock (`LOCK_WORDS`). `n` is a pin, 0–23.
 *
 *   word                    meaning
 *   2                       chip version, 0x11 or 0x20 (configuration)
 *   3                       feature flags: bit 0 RTC EOI tracking, bit 1 extended destination ID
 *                           (configuration)
 *   4                       MMIO base address, unsigned 32-bit (configuration)
 *   5                       IOAPICID value loaded at reset, bits 27:24 (configuration)
 *   6                       IOREGSEL, bits 7:0
 *   7                       IOAPICID register, bits 27:24
 *   8                       line levels: bit n = input n asserted (logical level, polarity ignored)
 *   9                       1 while the RTC pin's last edge awaits its EOI (RTC EOI tracking only)
 *   10                      deferred pins: bit n = pin n's re-delivery held back by the storm limiter
 *   11 .. 23                counters, in the order of `Counter` (unsigned, wrapping at 2^32)
 *   24 + 2n, 25 + 2n        RTE n: low half (bits 31:0), high half (bits 63:32)
 *   72 + n                  successive EOIs of pin n that found its level line still asserted
 *   96 + 2n, 97 + 2n        deadline of pin n's deferred re-delivery in Clock nanoseconds: low 32
 *                           bits, high bits (meaningful while bit n of word 10 is set)
 *   144                     resampled pins: bit n = pin n is resampled at EOI and unmask instead of
 *                           re-delivered (wiring set by the VMM with `setPinResampled`, not by the
 *                           guest; kept by RESET)
 *
 * Locking: every change except the single-word IOREGSEL write holds the IOAPIC lock, and words
 * are read and written plainly under it (the lock's atomics order them). Observers that read one
 * word (IOWIN reads, the accessors) take no lock and use `Atomics.load`. Lock order is PIC →
 * IOAPIC → LAPIC: the IOAPIC calls the sink (the APIC bus) with its lock held, so the sink must
 * never call back into this IOAPIC's mutators synchronously (the lock-free accessors are fine).
 * Resample and redirection-entry listeners are called after the lock is released, so they may call `setIrq`.
 *
 * Views: whether a pin is resampled is state (word 144), so every view, on any thread, lowers a
 * resampled pin's line at its EOI or unmask alike. Only the listener is per view: the view that
 * performs the EOI calls its own listener, if it has one. A view without one still lowers the line
 * and counts `resampleSignals`; whoever owns the device's resample listener on another thread must
 * learn of it some other way (for instance the chip's EOI path on that thread).
 */

import type { Clock } from '../../base/clock.ts';
import { check, checkRange, ErrorCode, IrqChipError } from '../../base/errors.ts';
import {
  acquireLock,
  allocateStateWords,
  encodeSnapshot,
  LOCK_WORDS,
  releaseLock,
  restoreSnapshot,
  tryAcquireLock,
  withLock,
} from '../../base/shared-state.ts';
import {
  TriggerMode,
  type EoiBroadcastListener,
  type InterruptMessage,
  type InterruptMessageSink,
} from '../interrupt-message.ts';
import {
  isReservedDeliveryMode,
  RTE_DELIVERY_STATUS,
  RTE_LOW_AT_RESET,
  RTE_LOW_READ_ONLY,
  RTE_LOW_RESERVED,
  RTE_REMOTE_IRR,
  rteDeliveryMode,
  rteHighReservedBits,
  rteIsLevelTriggered,
  rteIsMasked,
  rteMessage,
  rteMessageKeyLow,
  rteRemoteIrr,
  rteVector,
} from './redirection-entry.ts';

// ---------------------------------------------------------------------------------------------
// Public constants
// ---------------------------------------------------------------------------------------------

/** Where PC firmware places the first IOAPIC (82093AA §3.0; x86-controllers.md §2.1). */
export const IOAPIC_DEFAULT_BASE_ADDRESS = 0xfec00000;
/** Bytes of MMIO the IOAPIC decodes from its base (KVM and crosvm decode 0x100; §2.1). */
export const IOAPIC_WINDOW_BYTES = 0x100;
/** Input pins, and redirection entries (82093AA: 24; IOAPICVER reports 23 as the last entry). */
export const IOAPIC_PIN_COUNT = 24;

/** IOAPICVER bits 7:0: 0x11 is the 82093AA, 0x20 adds the EOI register (ICH; §2.11). */
export const IoapicVersion = { V11: 0x11, V20: 0x20 } as const;
export type IoapicVersion = (typeof IoapicVersion)[keyof typeof IoapicVersion];

/** Offsets of the direct registers within the MMIO window (§2.1). */
export const IoapicMmioOffset = { RegisterSelect: 0x00, Window: 0x10, EndOfInterrupt: 0x40 } as const;

/** Indexes of the indirect registers, written to IOREGSEL (§2.2). */
export const IoapicRegisterIndex = { Id: 0x00, Version: 0x01, Arbitration: 0x02, RedirectionTable: 0x10 } as const;

/** The pin the ISA RTC (IRQ 8) is wired to in the default routing (§2.10). */
export const IOAPIC_RTC_PIN = 8;
/** Storm limiter: this many successive EOIs with the line still asserted defer the next delivery (§6.1). */
export const IOAPIC_STORM_EOI_THRESHOLD = 10_000;
/** Storm limiter: how long the deferred re-delivery waits, 10 ms as in KVM and QEMU (§2.8 step 4). */
export const IOAPIC_STORM_DELAY_NS = 10_000_000;

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/**
 * Called, after the IOAPIC lock is released, when the IOAPIC has lowered the line of a resampled
 * level pin (`setPinResampled`) and wants its device to re-check and re-assert it if still
 * pending: at the EOI of the pin's vector, and at an unmask or retarget that finds the line
 * pending (§2.8 step 1, §2.9, §5.8; I13). One listener per view serves every pin.
 */
export type ResampleListener = (pin: number) => void;

/**
 * Called, after the IOAPIC lock is released, with the pin whose redirection entry the guest just
 * wrote through IOWIN (either half; the value may be unchanged). For a VMM that mirrors the table
 * elsewhere, such as KVM's MSI routes on a split irqchip. One listener per view.
 */
export type RedirectionEntryListener = (pin: number) => void;

export interface IoapicOptions {
  /** Where messages go: the APIC bus. Called with the IOAPIC lock held; must not call back into it. */
  readonly sink: InterruptMessageSink;
  /** Time for the storm limiter's deferred re-delivery. */
  readonly clock: Clock;
  /** 0x20 (default, with the EOI register) or 0x11 (82093AA, no EOI register). */
  readonly version?: IoapicVersion;
  /** Guest-physical MMIO base, aligned to `IOAPIC_WINDOW_BYTES`; default 0xFEC00000. */
  readonly baseAddress?: number;
  /** Number of pins; only 24 is supported. */
  readonly pins?: number;
  /** IOAPICID loaded at reset (0–15), as advertised in the firmware tables; default 0. */
  readonly id?: number;
  /**
   * Tick-stuffing support for the RTC (§2.10, §6.33): while an edge delivered on pin 8 awaits its
   * EOI, a new edge on pin 8 returns 0 (coalesced) and is not sent. Default off: the EOI of an
   * edge vector reaches the IOAPIC only if the local APIC forwards it with
   * `endOfInterrupt(vector, TriggerMode.Edge)`.
   */
  readonly rtcEoiTracking?: boolean;
  /** RTE bits 55:49 carry destination bits 14:8 (§4.3), as advertised to the guest. Default off. */
  readonly extendedDestinationId?: boolean;
}

/** What a second view over the same state needs: its own sink and clock. */
export interface IoapicViewOptions {
  readonly sink: InterruptMessageSink;
  readonly clock: Clock;
}

/** Serialisable handle on an IOAPIC's state, for `postMessage` to another worker. */
export interface IoapicDescriptor {
  readonly kind: 'ioapic';
  readonly buffer: SharedArrayBuffer;
}

/** A redirection entry as the guest reads it: two unsigned 32-bit halves. */
export interface RedirectionEntryHalves {
  readonly low: number;
  readonly high: number;
}

// ---------------------------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------------------------

/** Named counters kept in the state words; the value is the counter's offset in its block. */
const Counter = {
  /** MMIO accesses that mean nothing: other offsets, other sizes, the write-only EOI register. */
  ignoredAccesses: 0,
  /** IOWIN accesses while IOREGSEL selects no register (0x03–0x0F, 0x40–0xFF). */
  reservedRegisterAccesses: 1,
  /** IOWIN writes to IOAPICVER or IOAPICARB. */
  readOnlyWrites: 2,
  /** Writes that set reserved bits (IOREGSEL 31:8, ID outside 27:24, RTE, EOI register 31:8) or a reserved delivery mode. */
  reservedBitWrites: 3,
  /** Messages at least one local APIC accepted. */
  messagesAccepted: 4,
  /** Messages that coalesced with an interrupt already pending in every target. */
  messagesCoalesced: 5,
  /** Messages no local APIC took (no destination), and entries with a reserved delivery mode. */
  messagesUndelivered: 6,
  /** Assertions absorbed by the IOAPIC: an edge on a line already high, a level line with remote IRR set or deferred. */
  coalescedAsserts: 7,
  /** Edges that arrived on a masked pin, discarded as the 82093AA does (§2.6). */
  droppedMaskedEdges: 8,
  /** Level assertions on a masked pin, held pending until unmask (§2.9). */
  heldMaskedLevels: 9,
  /** RTC edges reported as coalesced while the previous one awaited its EOI (§2.10). */
  rtcCoalesced: 10,
  /** Re-deliveries deferred by the storm limiter (§6.1). */
  stormDeferrals: 11,
  /** Times a resampled pin's line was lowered for its device to re-check (with or without a listener on the view). */
  resampleSignals: 12,
} as const;
export type IoapicCounter = keyof typeof Counter;
const COUNTER_COUNT = Object.keys(Counter).length;

// ---------------------------------------------------------------------------------------------
// State layout (see the table at the top of the file)
// ---------------------------------------------------------------------------------------------

const CHIP_VERSION = LOCK_WORDS;
const FEATURE_FLAGS = LOCK_WORDS + 1;
const BASE_ADDRESS = LOCK_WORDS + 2;
const POWER_ON_ID = LOCK_WORDS + 3;
const IOREGSEL = LOCK_WORDS + 4;
const IOAPIC_ID = LOCK_WORDS + 5;
const LINE_LEVELS = LOCK_WORDS + 6;
const RTC_EOI_PENDING = LOCK_WORDS + 7;
const DEFERRED_PINS = LOCK_WORDS + 8;
const COUNTERS = LOCK_WORDS + 9;
const REDIRECTION_TABLE = COUNTERS + COUNTER_COUNT;
const STORM_EOI_COUNTS = REDIRECTION_TABLE + 2 * IOAPIC_PIN_COUNT;
const DEFERRAL_DEADLINES = STORM_EOI_COUNTS + IOAPIC_PIN_COUNT;
const RESAMPLED_PINS = DEFERRAL_DEADLINES + 2 * IOAPIC_PIN_COUNT;
const TOTAL_WORDS = RESAMPLED_PINS + 1;
const MODEL_WORDS = TOTAL_WORDS - LOCK_WORDS;

const FLAG_RTC_EOI_TRACKING = 1 << 0;
const FLAG_EXTENDED_DESTINATION_ID = 1 << 1;
const KNOWN_FLAGS = FLAG_RTC_EOI_TRACKING | FLAG_EXTENDED_DESTINATION_ID;

const SNAPSHOT_KIND = 'IOAP';
/** 2: word 144, the resampled pins, was added. */
const SNAPSHOT_LAYOUT_VERSION = 2;

// ---------------------------------------------------------------------------------------------
// Register encodings
// ---------------------------------------------------------------------------------------------

/** IOREGSEL holds an 8-bit index (§2.1); bits 31:8 are reserved. */
const IOREGSEL_INDEX_MASK = 0xff;
/** IOAPICID bits 27:24 hold the ID; the rest reads 0 (82093AA §3.2.1; §6.22). */
const IOAPIC_ID_MASK = 0x0f000000;
const IOAPIC_ID_SHIFT = 24;
const MAX_IOAPIC_ID = 0xf;
/** IOAPICVER bits 23:16: index of the last redirection entry. */
const MAX_REDIRECTION_ENTRY_SHIFT = 16;
/** First index after the redirection table (0x10 + 2 × 24). */
const REDIRECTION_TABLE_END = IoapicRegisterIndex.RedirectionTable + 2 * IOAPIC_PIN_COUNT;
/** What IOWIN reads for a selector past the redirection table (§2.2 Recommendation). */
const BEYOND_TABLE_READ_VALUE = 0xffffffff;
/** The EOI register's vector field, bits 7:0 (ICH datasheet). */
const EOI_REGISTER_VECTOR_MASK = 0xff;
const MAX_VECTOR = 0xff;

const ALL_PINS_MASK = (1 << IOAPIC_PIN_COUNT) - 1;
/** `writtenEntryPin` when the write touched no redirection entry. */
const NO_PIN = -1;
const DWORD_BYTES = 4;
const BYTE_BYTES = 1;
/** x86 MMIO accesses by ordinary instructions are 1 to 8 bytes. */
const MAX_ACCESS_BYTES = 8;
const TWO_POW_32 = 2 ** 32;
/** Deadlines are stored as 53-bit integers: the high word holds at most 21 bits. */
const MAX_DEADLINE_HIGH_WORD = 2 ** 21 - 1;

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

export class Ioapic implements EoiBroadcastListener {
  /** Chip version, fixed for the IOAPIC's life. */
  readonly version: IoapicVersion;
  /** Guest-physical MMIO base the bus maps the window at. */
  readonly baseAddress: number;

  private readonly words: Int32Array;
  private readonly sink: InterruptMessageSink;
  private readonly clock: Clock;
  private readonly rtcEoiTracking: boolean;
  private readonly extendedDestinationId: boolean;

  /** This view's resample listener (callbacks are not state: each view registers its own). */
  private resampleListener: ResampleListener | undefined;
  private entryListener: RedirectionEntryListener | undefined;
  /** The pin whose entry the IOWIN write in progress on this view wrote, or NO_PIN. */
  private writtenEntryPin = NO_PIN;

  /**
   * Messages are immutable and depend only on a few RTE bits, so each pin's last message is kept
   * and resent while those bits are unchanged: no allocation per interrupt.
   */
  private readonly messageCache: (InterruptMessage | undefined)[] = new Array<InterruptMessage | undefined>(
    IOAPIC_PIN_COUNT,
  ).fill(undefined);
  private readonly messageKeyLow = new Int32Array(IOAPIC_PIN_COUNT);
  private readonly messageKeyHigh = new Int32Array(IOAPIC_PIN_COUNT);

  private constructor(words: Int32Array, sink: InterruptMessageSink, clock: Clock) {
    this.words = words;
    this.sink = sink;
    this.clock = clock;
    this.version = Atomics.load(words, CHIP_VERSION) as IoapicVersion;
    this.baseAddress = Atomics.load(words, BASE_ADDRESS) >>> 0;
    const flags = Atomics.load(words, FEATURE_FLAGS);
    this.rtcEoiTracking = (flags & FLAG_RTC_EOI_TRACKING) !== 0;
    this.extendedDestinationId = (flags & FLAG_EXTENDED_DESTINATION_ID) !== 0;
  }

  /** Creates an IOAPIC in its reset state. Throws EINVAL for a bad option. */
  static create(options: IoapicOptions): Ioapic {
    const version: number = options.version ?? IoapicVersion.V20;
    check(isIoapicVersion(version), ErrorCode.EINVAL, `IOAPIC version must be 0x11 or 0x20, got ${String(version)}`);
    check((options.pins ?? IOAPIC_PIN_COUNT) === IOAPIC_PIN_COUNT, ErrorCode.EINVAL, 'IOAPIC pins must be 24');
    const baseAddress = options.baseAddress ?? IOAPIC_DEFAULT_BASE_ADDRESS;
    checkRange(baseAddress, 0, TWO_POW_32 - IOAPIC_WINDOW_BYTES, 'IOAPIC base address');
    check(baseAddress % IOAPIC_WINDOW_BYTES === 0, ErrorCode.EINVAL, 'IOAPIC base address must be aligned to 0x100');
    const id = options.id ?? 0;
    checkRange(id, 0, MAX_IOAPIC_ID, 'IOAPIC ID');
    checkViewOptions(options);
    const rtcEoiTracking: unknown = options.rtcEoiTracking ?? false;
    const extendedDestinationId: unknown = options.extendedDestinationId ?? false;
    check(typeof rtcEoiTracking === 'boolean', ErrorCode.EINVAL, 'rtcEoiTracking must be a boolean');
    check(typeof extendedDestinationId === 'boolean', ErrorCode.EINVAL, 'extendedDestinationId must be a boolean');

    const words = allocateStateWords(MODEL_WORDS);
    Atomics.store(words, CHIP_VERSION, version);
    Atomics.store(
      words,
      FEATURE_FLAGS,
      (rtcEoiTracking ? FLAG_RTC_EOI_TRACKING : 0) | (extendedDestinationId ? FLAG_EXTENDED_DESTINATION_ID : 0),
    );
    Atomics.store(words, BASE_ADDRESS, baseAddress);
    Atomics.store(words, POWER_ON_ID, id << IOAPIC_ID_SHIFT);
    const ioapic = new Ioapic(words, options.sink, options.clock);
    ioapic.reset();
    return ioapic;
  }

  /** Builds another view over the state behind `descriptor` (for instance in a worker thread). */
  static fromState(descriptor: IoapicDescriptor, options: IoapicViewOptions): Ioapic {
    // Descriptors arrive through postMessage from untyped code: check every field.
    const candidate = descriptor as Partial<Record<keyof IoapicDescriptor, unknown>> | null | undefined;
    const kind = candidate?.kind;
    const buffer = candidate?.buffer;
    check(kind === 'ioapic' && buffer instanceof SharedArrayBuffer, ErrorCode.EINVAL, 'not an IOAPIC descriptor');
    check(
      buffer.byteLength === TOTAL_WORDS * Int32Array.BYTES_PER_ELEMENT,
      ErrorCode.EINVAL,
      `IOAPIC state must be ${TOTAL_WORDS * Int32Array.BYTES_PER_ELEMENT} bytes, got ${buffer.byteLength}`,
    );
    const words = new Int32Array(buffer);
    check(isIoapicVersion(Atomics.load(words, CHIP_VERSION)), ErrorCode.EINVAL, 'IOAPIC state has no valid version');
    checkViewOptions(options);
    return new Ioapic(words, options.sink, options.clock);
  }

  descriptor(): IoapicDescriptor {
    return { kind: 'ioapic', buffer: this.words.buffer as SharedArrayBuffer };
  }

  // -------------------------------------------------------------------------------------------
  // Guest MMIO (§2.1). Offsets are relative to `baseAddress`.
  // -------------------------------------------------------------------------------------------

  /**
   * A guest read of `size` bytes at `offset` in the window; returns the unsigned value. Only
   * IOREGSEL (byte or dword) and IOWIN (dword) read anything; the rest reads 0 and is counted.
   * Throws EINVAL only for an offset outside the window or a size outside 1–8 (a bus bug).
   */
  mmioRead(offset: number, size: number): number {
    checkAccess(offset, size);
    if (offset === IoapicMmioOffset.RegisterSelect && isRegisterSelectSize(size)) return this.observe(IOREGSEL);
    if (offset === IoapicMmioOffset.Window && size === DWORD_BYTES) return this.readWindow();
    this.bumpUnlocked(Counter.ignoredAccesses);
    return 0;
  }

  /**
   * A guest write of `size` bytes at `offset`; `value` is the written bytes as an unsigned
   * little-endian integer. Meaningful: IOREGSEL (byte or dword), IOWIN (dword), and on version
   * 0x20 the EOI register (dword). Everything else is ignored and counted.
   */
  mmioWrite(offset: number, size: number, value: number): void {
    checkAccess(offset, size);
    requireInRange(value, 0, 2 ** (8 * size) - 1, 'IOAPIC MMIO value for the access size');
    if (offset === IoapicMmioOffset.RegisterSelect && isRegisterSelectSize(size)) {
      this.writeRegisterSelect(value);
    } else if (offset === IoapicMmioOffset.Window && size === DWORD_BYTES) {
      this.writeWindow(value);
    } else if (offset === IoapicMmioOffset.EndOfInterrupt && size === DWORD_BYTES && this.version === IoapicVersion.V20) {
      this.writeEoiRegister(value);
    } else {
      this.bumpUnlocked(Counter.ignoredAccesses);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Device side and local-APIC side
  // -------------------------------------------------------------------------------------------

  /**
   * Drives input `pin` (0–23) to `level` (true = asserted; polarity is ignored, §2.6). Returns
   * KVM's result convention (§0): < 0 ignored (masked, or no local APIC took it), 0 coalesced,
   * > 0 how many local APICs accepted it; a deassert returns 1, as KVM does.
   */
  setIrq(pin: number, level: boolean): number {
    checkPin(pin);
    // acquire/release rather than withLock: this is the per-interrupt path, and a closure per
    // call is measurable there.
    acquireLock(this.words);
    return this.driveLineAndUnlock(pin, level);
  }

  /**
   * `setIrq` that never waits for the lock: returns undefined, having changed nothing, when
   * another view (on any thread) holds it, so the caller can defer the change and retry (as
   * crosvm's device thread does when a vCPU holds the IOAPIC). Otherwise exactly `setIrq`.
   */
  trySetIrq(pin: number, level: boolean): number | undefined {
    checkPin(pin);
    if (!tryAcquireLock(this.words)) return undefined;
    return this.driveLineAndUnlock(pin, level);
  }

  /**
   * EOI broadcast from a local APIC (§2.8, §3.7). The LAPIC sends the vectors it accepted as level
   * (TMR set), which clear remote IRR of every level entry with that vector and re-deliver lines
   * still asserted. `TriggerMode.Edge` is for a LAPIC that also forwards edge EOIs: they only end
   * the RTC's coalescing window (§2.10), as KVM's EOI of an edge vector does.
   */
  endOfInterrupt(vector: number, triggerMode: TriggerMode = TriggerMode.Level): void {
    requireInRange(vector, 0, MAX_VECTOR, 'EOI vector');
    requireInRange(triggerMode, TriggerMode.Edge, TriggerMode.Level, 'EOI trigger mode');
    let resampled: number;
    acquireLock(this.words);
    try {
      resampled = this.acknowledgeVector(vector, triggerMode);
    } finally {
      releaseLock(this.words);
    }
    this.notifyResampled(resampled);
  }

  /**
   * Makes level pin `pin` resampled (or, with false, re-delivered again). A resampled pin's line
   * is not re-delivered at EOI or unmask: it is lowered and the resample listener told, so the
   * device re-asserts it only if it still needs service (§2.9, §5.8, I13; KVM's resampler irqfd).
   * This is state shared by every view and saved in snapshots; a reset keeps it.
   */
  setPinResampled(pin: number, resampled: boolean): void {
    checkPin(pin);
    check(typeof resampled === 'boolean', ErrorCode.EINVAL, 'resampled must be a boolean');
    withLock(this.words, () => {
      const bit = 1 << pin;
      const pins = this.word(RESAMPLED_PINS);
      this.setWord(RESAMPLED_PINS, resampled ? pins | bit : pins & ~bit);
    });
  }

  isPinResampled(pin: number): boolean {
    checkPin(pin);
    return (this.observe(RESAMPLED_PINS) & (1 << pin)) !== 0;
  }

  /**
   * Registers (or with `undefined` removes) this view's resample listener, called with the pin
   * for every resampled pin whose line this view lowered (after the lock is released). Without a
   * listener a resampled pin is still lowered and counted in `resampleSignals`: whether a pin is
   * resampled is shared state, and the view that owns the device's listener may be on another
   * thread, so it is that owner's job to learn of the EOI.
   */
  setResampleListener(listener: ResampleListener | undefined): void {
    check(
      listener === undefined || typeof (listener as unknown) === 'function',
      ErrorCode.EINVAL,
      'resample listener must be a function or undefined',
    );
    this.resampleListener = listener;
  }

  /** Registers (or with `undefined` removes) this view's listener for guest writes of redirection entries. */
  setRedirectionEntryListener(listener: RedirectionEntryListener | undefined): void {
    check(
      listener === undefined || typeof (listener as unknown) === 'function',
      ErrorCode.EINVAL,
      'redirection entry listener must be a function or undefined',
    );
    this.entryListener = listener;
  }

  // -------------------------------------------------------------------------------------------
  // Deferred work (storm limiter), driven by the Clock: the model owns no timers.
  // -------------------------------------------------------------------------------------------

  /** When `runDelayedWork` next has something to do, in Clock nanoseconds; undefined if never. */
  nextDeadlineNs(): number | undefined {
    if (this.observe(DEFERRED_PINS) === 0) return undefined;
    return withLock(this.words, () => {
      let earliest: number | undefined;
      for (let pending = this.word(DEFERRED_PINS); pending !== 0; pending &= pending - 1) {
        const deadline = this.deadline(lowestPin(pending));
        if (earliest === undefined || deadline < earliest) earliest = deadline;
      }
      return earliest;
    });
  }

  /** Performs the deferred re-deliveries whose deadline has passed. */
  runDelayedWork(): void {
    if (this.observe(DEFERRED_PINS) === 0) return;
    const resampled = withLock(this.words, () => this.redeliverDueDeferrals());
    this.notifyResampled(resampled);
  }

  // -------------------------------------------------------------------------------------------
  // Observability (lock-free single-word reads; safe to call from a sink)
  // -------------------------------------------------------------------------------------------

  /** The entry of `pin` as the guest would read it. */
  redirectionEntry(pin: number): RedirectionEntryHalves {
    checkPin(pin);
    return { low: this.observe(lowIndex(pin)) >>> 0, high: this.observe(highIndex(pin)) >>> 0 };
  }

  remoteIrr(pin: number): boolean {
    checkPin(pin);
    return rteRemoteIrr(this.observe(lowIndex(pin)));
  }

  /** Whether input `pin` is currently asserted. */
  lineLevel(pin: number): boolean {
    checkPin(pin);
    return (this.observe(LINE_LEVELS) & (1 << pin)) !== 0;
  }

  counters(): Readonly<Record<IoapicCounter, number>> {
    const result = {} as Record<IoapicCounter, number>;
    for (const [name, offset] of Object.entries(Counter) as [IoapicCounter, number][]) {
      result[name] = this.observe(COUNTERS + offset) >>> 0;
    }
    return result;
  }

  // -------------------------------------------------------------------------------------------
  // Reset and snapshots
  // -------------------------------------------------------------------------------------------

  /**
   * RESET (§2.3): every entry masked with the other bits 0, IOREGSEL 0, the ID from the options,
   * storm and RTC tracking cleared. Line levels are inputs driven by devices, not chip state, so a
   * line still asserted stays asserted (KVM and QEMU clear their irr; a level device that holds its
   * line would then never interrupt again after the guest unmasks). Counters keep counting, and
   * the resampled pins stay resampled: they describe how devices are wired, which RESET does not
   * change.
   */
  reset(): void {
    withLock(this.words, () => {
      this.setWord(IOREGSEL, 0);
      this.setWord(IOAPIC_ID, this.word(POWER_ON_ID));
      this.setWord(RTC_EOI_PENDING, 0);
      this.setWord(DEFERRED_PINS, 0);
      for (let pin = 0; pin < IOAPIC_PIN_COUNT; pin++) {
        this.setWord(lowIndex(pin), RTE_LOW_AT_RESET);
        this.setWord(highIndex(pin), 0);
        this.setWord(STORM_EOI_COUNTS + pin, 0);
        this.storeDeadline(pin, 0);
      }
    });
  }

  snapshot(): Uint8Array {
    return withLock(this.words, () => encodeSnapshot(SNAPSHOT_KIND, SNAPSHOT_LAYOUT_VERSION, this.words));
  }

  /**
   * Replaces the state with a snapshot of an IOAPIC configured the same way. Throws EINVAL, and
   * changes nothing, for damaged, foreign or impossible snapshots. The resampled pins come from
   * the snapshot; this view's listener is kept.
   */
  restore(bytes: Uint8Array): void {
    restoreSnapshot(this.words, bytes, SNAPSHOT_KIND, SNAPSHOT_LAYOUT_VERSION, (payload) => {
      this.validateSnapshot(payload);
    });
    withLock(this.words, () => {
      this.rebaseDeadlines();
    });
  }

  // -------------------------------------------------------------------------------------------
  // Indirect registers (§2.2)
  // -------------------------------------------------------------------------------------------

  /** A single word: no lock, one atomic store. */
  private writeRegisterSelect(value: number): void {
    if ((value & ~IOREGSEL_INDEX_MASK) !== 0) this.bumpUnlocked(Counter.reservedBitWrites);
    Atomics.store(this.words, IOREGSEL, value & IOREGSEL_INDEX_MASK);
  }

  /** Reads single words, so it needs no lock. */
  private readWindow(): number {
    const select = this.observe(IOREGSEL);
    // IOAPICARB reads as the ID: its arbitration ID is loaded from it, and every VMM returns the
    // ID there (§2.2).
    if (select === IoapicRegisterIndex.Id || select === IoapicRegisterIndex.Arbitration) return this.observe(IOAPIC_ID) >>> 0;
    if (select === IoapicRegisterIndex.Version) return ((IOAPIC_PIN_COUNT - 1) << MAX_REDIRECTION_ENTRY_SHIFT) | this.version;
    if (isRedirectionSelect(select)) return this.observe(REDIRECTION_TABLE + select - IoapicRegisterIndex.RedirectionTable) >>> 0;
    this.bumpUnlocked(Counter.reservedRegisterAccesses);
    return select < IoapicRegisterIndex.RedirectionTable ? 0 : BEYOND_TABLE_READ_VALUE;
  }

  private writeWindow(value: number): void {
    const resampled = withLock(this.words, () => this.writeSelectedRegister(value));
    this.notifyResampled(resampled);
    const pin = this.writtenEntryPin;
    if (pin === NO_PIN) return;
    this.writtenEntryPin = NO_PIN;
    this.entryListener?.(pin);
  }

  /** Writes the register IOREGSEL selects; returns the pins resampled by the write. */
  private writeSelectedRegister(value: number): number {
    const select = this.word(IOREGSEL);
    if (select === IoapicRegisterIndex.Id) {
      if ((value & ~IOAPIC_ID_MASK) !== 0) this.bump(Counter.reservedBitWrites);
      this.setWord(IOAPIC_ID, value & IOAPIC_ID_MASK);
      return 0;
    }
    if (select === IoapicRegisterIndex.Version || select === IoapicRegisterIndex.Arbitration) {
      this.bump(Counter.readOnlyWrites);
      return 0;
    }
    if (!isRedirectionSelect(select)) {
      this.bump(Counter.reservedRegisterAccesses);
      return 0;
    }
    const half = select - IoapicRegisterIndex.RedirectionTable;
    const pin = half >>> 1;
    this.writtenEntryPin = pin;
    if ((half & 1) === 0) this.writeEntryLow(pin, value);
    else this.writeEntryHigh(pin, value);
    // §2.5 step 6: re-evaluate the pin after any write, which is how an unmask (or a retarget)
    // fires a level interrupt that is still pending.
    return this.servicePendingLevel(pin);
  }

  /** §2.5 steps 1–3: RO bits keep their value; an entry that is no longer level loses remote IRR. */
  private writeEntryLow(pin: number, value: number): void {
    if ((value & RTE_LOW_RESERVED) !== 0 || isReservedDeliveryMode(rteDeliveryMode(value))) {
      this.bump(Counter.reservedBitWrites);
    }
    const index = lowIndex(pin);
    const previous = this.word(index);
    let next = (value & ~RTE_LOW_READ_ONLY) | (previous & RTE_REMOTE_IRR);
    // Linux and Xen EOI a v0x11 IOAPIC by switching the entry to edge and back (§6.2).
    if (!rteIsLevelTriggered(next)) next &= ~RTE_REMOTE_IRR;
    this.setWord(index, next);
    // The EOI that would end the RTC's coalescing window carries the old vector and would no
    // longer match: start over rather than coalesce forever.
    if (pin === IOAPIC_RTC_PIN && rteVector(next) !== rteVector(previous)) this.setWord(RTC_EOI_PENDING, 0);
  }

  private writeEntryHigh(pin: number, value: number): void {
    if ((value & rteHighReservedBits(this.extendedDestinationId)) !== 0) this.bump(Counter.reservedBitWrites);
    this.setWord(highIndex(pin), value);
  }

  /** The v0x20 EOI register: the same as an EOI broadcast of its vector (ICH datasheet; I18). */
  private writeEoiRegister(value: number): void {
    if ((value & ~EOI_REGISTER_VECTOR_MASK) !== 0) this.bumpUnlocked(Counter.reservedBitWrites);
    this.endOfInterrupt(value & EOI_REGISTER_VECTOR_MASK, TriggerMode.Level);
  }

  // -------------------------------------------------------------------------------------------
  // Pin input (§2.6); all called with the lock held
  // -------------------------------------------------------------------------------------------

  private assertLine(pin: number): number {
    const bit = 1 << pin;
    const levels = this.word(LINE_LEVELS);
    this.setWord(LINE_LEVELS, levels | bit);
    const low = this.word(lowIndex(pin));
    if (rteIsLevelTriggered(low)) return this.assertLevel(pin, low);
    // Edge: only a 0→1 transition is an edge; a repeated assert is absorbed (§2.6 Recommendation, §6.36).
    if ((levels & bit) !== 0) return this.coalesce();
    return this.assertEdge(pin, low);
  }

  private assertEdge(pin: number, low: number): number {
    if (rteIsMasked(low)) {
      // The 82093AA discards edges on a masked pin; unmasking does not replay them (§6.7).
      this.bump(Counter.droppedMaskedEdges);
      return -1;
    }
    if (pin === IOAPIC_RTC_PIN && this.word(RTC_EOI_PENDING) !== 0) {
      this.bump(Counter.rtcCoalesced);
      return 0;
    }
    return this.deliver(pin, low);
  }

  private assertLevel(pin: number, low: number): number {
    if (rteIsMasked(low)) {
      // Held in the line level; delivered (or resampled) when the guest unmasks (§2.9).
      this.bump(Counter.heldMaskedLevels);
      return -1;
    }
    // While the previous one awaits its EOI, or the storm limiter holds the pin, the assertion
    // merges with it; the EOI (or the deferred work) re-delivers a line still high (§2.10).
    if (rteRemoteIrr(low) || this.isDeferred(pin)) return this.coalesce();
    return this.deliver(pin, low);
  }

  /** The body of `setIrq` and `trySetIrq`: called with the lock held, releases it. */
  private driveLineAndUnlock(pin: number, level: boolean): number {
    try {
      return level ? this.assertLine(pin) : this.deassertLine(pin);
    } finally {
      releaseLock(this.words);
    }
  }

  private deassertLine(pin: number): number {
    this.lowerLine(pin);
    return 1;
  }

  private coalesce(): number {
    this.bump(Counter.coalescedAsserts);
    return 0;
  }

  /** Lowers the line of `pin`; nothing is pending any more, so a storm deferral ends too. */
  private lowerLine(pin: number): void {
    const bit = 1 << pin;
    this.setWord(LINE_LEVELS, this.word(LINE_LEVELS) & ~bit);
    this.setWord(DEFERRED_PINS, this.word(DEFERRED_PINS) & ~bit);
  }

  // -------------------------------------------------------------------------------------------
  // Delivery (§2.7); all called with the lock held
  // -------------------------------------------------------------------------------------------

  /**
   * Sends the entry's message. A level entry gets remote IRR when at least one local APIC accepted
   * it (§2.7 Recommendation): with no taker there will be no EOI to clear it.
   */
  private deliver(pin: number, low: number): number {
    if (isReservedDeliveryMode(rteDeliveryMode(low))) {
      // Reserved encodings (82093AA §3.2.4) have no defined message; sending a SIPI or remote
      // read on the guest's behalf would be worse than sending nothing.
      this.bump(Counter.messagesUndelivered);
      return -1;
    }
    const result = this.sink.deliver(this.messageFor(pin, low));
    if (result > 0) {
      this.bump(Counter.messagesAccepted);
      this.markAwaitingEoi(pin, low);
    } else {
      this.bump(result === 0 ? Counter.messagesCoalesced : Counter.messagesUndelivered);
    }
    return result;
  }

  private markAwaitingEoi(pin: number, low: number): void {
    if (rteIsLevelTriggered(low)) {
      const index = lowIndex(pin);
      this.setWord(index, this.word(index) | RTE_REMOTE_IRR);
    } else if (pin === IOAPIC_RTC_PIN && this.rtcEoiTracking) {
      this.setWord(RTC_EOI_PENDING, 1);
    }
  }

  private messageFor(pin: number, low: number): InterruptMessage {
    const keyLow = rteMessageKeyLow(low);
    const high = this.word(highIndex(pin));
    const cached = this.messageCache[pin];
    if (cached !== undefined && this.messageKeyLow[pin] === keyLow && this.messageKeyHigh[pin] === high) return cached;
    const message = rteMessage(low, high, this.extendedDestinationId);
    this.messageCache[pin] = message;
    this.messageKeyLow[pin] = keyLow;
    this.messageKeyHigh[pin] = high;
    return message;
  }

  /**
   * Services a level line that is pending and eligible (unmasked, remote IRR clear, not deferred):
   * resample it if it is resampled (KVM's rule for stale pending state, §6.8), else deliver it.
   * Returns the pin's bit if it was resampled.
   */
  private servicePendingLevel(pin: number): number {
    const low = this.word(lowIndex(pin));
    if (!rteIsLevelTriggered(low) || rteIsMasked(low) || rteRemoteIrr(low)) return 0;
    if (!this.isLineHigh(pin) || this.isDeferred(pin)) return 0;
    if (this.isResampled(pin)) return this.resample(pin);
    this.deliver(pin, low);
    return 0;
  }

  /** Lowers the line so the device's re-assert is a fresh one; the caller signals the listener. */
  private resample(pin: number): number {
    this.lowerLine(pin);
    this.setWord(STORM_EOI_COUNTS + pin, 0);
    this.bump(Counter.resampleSignals);
    return 1 << pin;
  }

  /** Calls this view's listener for each pin in `resampledPins`; the lock must not be held. */
  private notifyResampled(resampledPins: number): void {
    const listener = this.resampleListener;
    if (listener === undefined) return;
    for (let pending = resampledPins; pending !== 0; pending &= pending - 1) listener(lowestPin(pending));
  }

  // -------------------------------------------------------------------------------------------
  // EOI (§2.8) and the storm limiter (§6.1); all called with the lock held
  // -------------------------------------------------------------------------------------------

  /** Applies an EOI of `vector` to every matching entry (§6.5); returns the resampled pins. */
  private acknowledgeVector(vector: number, triggerMode: TriggerMode): number {
    let resampled = 0;
    for (let pin = 0; pin < IOAPIC_PIN_COUNT; pin++) {
      const low = this.word(lowIndex(pin));
      if (rteVector(low) !== vector) continue;
      if (pin === IOAPIC_RTC_PIN) this.setWord(RTC_EOI_PENDING, 0);
      // §2.11 Recommendation: remote IRR is cleared by a level EOI of a level entry only.
      if (triggerMode === TriggerMode.Level && rteIsLevelTriggered(low)) resampled |= this.completeLevel(pin, low);
    }
    return resampled;
  }

  /** Ends a level interrupt: clears remote IRR, then resamples or re-delivers a line still high. */
  private completeLevel(pin: number, low: number): number {
    this.setWord(lowIndex(pin), low & ~RTE_REMOTE_IRR);
    if (this.isResampled(pin)) return this.resample(pin);
    this.redeliverIfStillAsserted(pin, low & ~RTE_REMOTE_IRR);
    return 0;
  }

  /**
   * §2.8 step 4: a line still asserted at EOI is delivered again at once, unless this is the
   * 10 000th successive time: then the storm limiter defers it by 10 ms, so a guest that EOIs
   * before silencing its device makes progress (§6.1).
   */
  private redeliverIfStillAsserted(pin: number, low: number): void {
    if (this.isDeferred(pin)) return;
    const stormIndex = STORM_EOI_COUNTS + pin;
    if (rteIsMasked(low) || !this.isLineHigh(pin)) {
      this.setWord(stormIndex, 0);
      return;
    }
    const successiveEois = this.word(stormIndex) + 1;
    if (successiveEois < IOAPIC_STORM_EOI_THRESHOLD) {
      this.setWord(stormIndex, successiveEois);
      this.deliver(pin, low);
      return;
    }
    this.setWord(stormIndex, 0);
    this.storeDeadline(pin, Math.ceil(this.clock.nowNs()) + IOAPIC_STORM_DELAY_NS);
    this.setWord(DEFERRED_PINS, this.word(DEFERRED_PINS) | (1 << pin));
    this.bump(Counter.stormDeferrals);
  }

  private redeliverDueDeferrals(): number {
    const now = this.clock.nowNs();
    let resampled = 0;
    for (let pending = this.word(DEFERRED_PINS); pending !== 0; pending &= pending - 1) {
      const pin = lowestPin(pending);
      if (this.deadline(pin) > now) continue;
      this.setWord(DEFERRED_PINS, this.word(DEFERRED_PINS) & ~(1 << pin));
      resampled |= this.servicePendingLevel(pin);
    }
    return resampled;
  }

  /**
   * Deadlines are absolute times of the Clock that took the snapshot; another host's clock may
   * count from elsewhere. A deferral never waits more than the storm delay from now.
   */
  private rebaseDeadlines(): void {
    const latest = Math.ceil(this.clock.nowNs()) + IOAPIC_STORM_DELAY_NS;
    for (let pending = this.word(DEFERRED_PINS); pending !== 0; pending &= pending - 1) {
      const pin = lowestPin(pending);
      if (this.deadline(pin) > latest) this.storeDeadline(pin, latest);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Snapshot validation
  // -------------------------------------------------------------------------------------------

  /** Rejects states the model can never reach, or a snapshot of a differently configured IOAPIC. */
  private validateSnapshot(payload: Int32Array): void {
    const word = (index: number): number => payload[index - LOCK_WORDS] ?? 0;
    const reject = (why: string): never => {
      throw new IrqChipError(ErrorCode.EINVAL, `IOAPIC snapshot rejected: ${why}`);
    };
    for (const index of [CHIP_VERSION, FEATURE_FLAGS, BASE_ADDRESS, POWER_ON_ID]) {
      if (word(index) !== this.observe(index)) reject('taken from an IOAPIC with another configuration');
    }
    if ((word(FEATURE_FLAGS) & ~KNOWN_FLAGS) !== 0) reject('unknown feature flags');
    if ((word(IOREGSEL) & ~IOREGSEL_INDEX_MASK) !== 0) reject('IOREGSEL wider than 8 bits');
    if ((word(IOAPIC_ID) & ~IOAPIC_ID_MASK) !== 0) reject('IOAPICID bits outside 27:24');
    if ((word(LINE_LEVELS) & ~ALL_PINS_MASK) !== 0) reject('line level of a pin that does not exist');
    if ((word(DEFERRED_PINS) & ~ALL_PINS_MASK) !== 0) reject('deferral of a pin that does not exist');
    if ((word(RESAMPLED_PINS) & ~ALL_PINS_MASK) !== 0) reject('resampling of a pin that does not exist');
    const rtcPending = word(RTC_EOI_PENDING);
    if (rtcPending !== 0 && (rtcPending !== 1 || !this.rtcEoiTracking)) reject('impossible RTC EOI state');
    for (let pin = 0; pin < IOAPIC_PIN_COUNT; pin++) {
      const low = word(lowIndex(pin));
      if ((low & RTE_DELIVERY_STATUS) !== 0) reject(`RTE ${pin} has delivery status set`);
      if (rteRemoteIrr(low) && !rteIsLevelTriggered(low)) reject(`RTE ${pin} has remote IRR on an edge entry`);
      const storm = word(STORM_EOI_COUNTS + pin);
      if (storm < 0 || storm >= IOAPIC_STORM_EOI_THRESHOLD) reject(`storm count ${storm} of pin ${pin}`);
      const deadlineHigh = word(DEFERRAL_DEADLINES + 2 * pin + 1);
      if (deadlineHigh < 0 || deadlineHigh > MAX_DEADLINE_HIGH_WORD) reject(`deadline of pin ${pin} out of range`);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Word access
  // -------------------------------------------------------------------------------------------

  /**
   * Reads a word with the lock held. Plain typed-array access: the lock's atomic operations order
   * it, and V8 does not inline `Atomics.load` (about 10 ns a read, which an EOI's scan of 24
   * entries would pay 24 times).
   */
  private word(index: number): number {
    return this.words[index] ?? 0;
  }

  /** Writes a word with the lock held (see `word`). */
  private setWord(index: number, value: number): void {
    this.words[index] = value;
  }

  /** Reads a word without the lock, for observers: one atomic read, never torn. */
  private observe(index: number): number {
    return Atomics.load(this.words, index);
  }

  /** Counts an event; the lock must be held, since a plain increment is not atomic. */
  private bump(counter: number): void {
    this.words[COUNTERS + counter] = (this.words[COUNTERS + counter] ?? 0) + 1;
  }

  /** Counts an event on a path that does not otherwise take the lock (guest mistakes: rare). */
  private bumpUnlocked(counter: number): void {
    withLock(this.words, () => {
      this.bump(counter);
    });
  }

  private isLineHigh(pin: number): boolean {
    return (this.word(LINE_LEVELS) & (1 << pin)) !== 0;
  }

  private isDeferred(pin: number): boolean {
    return (this.word(DEFERRED_PINS) & (1 << pin)) !== 0;
  }

  private isResampled(pin: number): boolean {
    return (this.word(RESAMPLED_PINS) & (1 << pin)) !== 0;
  }

  private deadline(pin: number): number {
    const index = DEFERRAL_DEADLINES + 2 * pin;
    return (this.word(index) >>> 0) + this.word(index + 1) * TWO_POW_32;
  }

  private storeDeadline(pin: number, ns: number): void {
    const index = DEFERRAL_DEADLINES + 2 * pin;
    this.setWord(index, ns % TWO_POW_32);
    this.setWord(index + 1, Math.floor(ns / TWO_POW_32));
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function lowIndex(pin: number): number {
  return REDIRECTION_TABLE + 2 * pin;
}

function highIndex(pin: number): number {
  return REDIRECTION_TABLE + 2 * pin + 1;
}

/** The lowest pin whose bit is set in a non-zero mask. */
function lowestPin(mask: number): number {
  return 31 - Math.clz32(mask & -mask);
}

function isRedirectionSelect(select: number): boolean {
  return select >= IoapicRegisterIndex.RedirectionTable && select < REDIRECTION_TABLE_END;
}

/** IOREGSEL takes byte or dword accesses (§2.1 Recommendation). */
function isRegisterSelectSize(size: number): boolean {
  return size === BYTE_BYTES || size === DWORD_BYTES;
}

function isIoapicVersion(value: number): value is IoapicVersion {
  return value === IoapicVersion.V11 || value === IoapicVersion.V20;
}

/**
 * `checkRange`, for the per-interrupt paths: `checkRange` formats its message on every call, so
 * it is called only once the value is known to be bad.
 */
function requireInRange(value: number, min: number, max: number, what: string): void {
  if (!(Number.isInteger(value) && value >= min && value <= max)) checkRange(value, min, max, what);
}

function checkPin(pin: number): void {
  requireInRange(pin, 0, IOAPIC_PIN_COUNT - 1, 'IOAPIC pin');
}

/** An offset outside the window or an impossible size is the bus's mistake, not the guest's. */
function checkAccess(offset: number, size: number): void {
  requireInRange(offset, 0, IOAPIC_WINDOW_BYTES - 1, 'IOAPIC MMIO offset');
  requireInRange(size, 1, MAX_ACCESS_BYTES, 'IOAPIC MMIO access size');
}

function checkViewOptions(options: IoapicViewOptions): void {
  const sink: unknown = (options.sink as Partial<InterruptMessageSink> | undefined)?.deliver;
  const clock: unknown = (options.clock as Partial<Clock> | undefined)?.nowNs;
  check(typeof sink === 'function', ErrorCode.EINVAL, 'IOAPIC sink must have a deliver method');
  check(typeof clock === 'function', ErrorCode.EINVAL, 'IOAPIC clock must have a nowNs method');
}
