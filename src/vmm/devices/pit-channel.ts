/**
 * One counter of the 8254 programmable interval timer (Intel 8254 datasheet, order 231164: the
 * "Counter" of the datasheet; "channel" here, as Linux, QEMU and KVM call it, so that "counter"
 * stays free for the device's statistics).
 *
 * Nothing ticks. A channel is told the current input-clock pulse number (`ticksAt`) with every
 * operation and computes its counting element (CE) and OUT from how many pulses passed since the
 * CE was loaded: `p = tick - anchor`, where `anchor` is the pulse that loaded it. A count written
 * at pulse k is loaded on the next pulse, k + 1, and that pulse does not decrement (datasheet,
 * "Mode Definitions": OUT in mode 0 goes high N + 1 pulses after the count is written).
 *
 * Per mode, with N the initial count (0 means 2^16 binary, 10^4 BCD) and p >= 0 (datasheet,
 * "Mode Definitions"):
 *   mode 0  interrupt on terminal count   CE = N - p (wraps)   OUT low, high from p = N on
 *   mode 1  retriggerable one-shot         same, from the pulse after a GATE rising edge
 *   mode 2  rate generator                 CE = N - (p mod N)   OUT low only when p mod N = N - 1
 *   mode 3  square wave                    CE -= 2 per pulse    OUT high for ceil(N/2) pulses, low for floor(N/2)
 *   mode 4  software-triggered strobe      CE = N - p (wraps)   OUT low only at p = N
 *   mode 5  hardware-triggered strobe      mode 4 from the pulse after a GATE rising edge
 * so the rising edges of OUT (what an edge-triggered interrupt input latches) are at p = jN
 * (j >= 1) in modes 2 and 3, at p = N in modes 0 and 1, and at p = N + 1 in modes 4 and 5.
 *
 * GATE (datasheet, "Gate", and its table of GATE pin operations): modes 0 and 4 count only while it is high (the CE holds
 * while it is low, OUT unaffected); in modes 1 and 5 a rising edge loads the CE (a trigger); in
 * modes 2 and 3 low stops counting and forces OUT high at once, and a rising edge reloads the CE.
 * A count written while counting: mode 0 and 4 load it on the next pulse; modes 1 and 5 at the
 * next trigger; mode 2 at the end of the current period and mode 3 at the end of the current half
 * cycle (or at a trigger, whichever comes first).
 *
 * Where KVM's in-kernel PIT (arch/x86/kvm/i8254.c) differs, this model follows the datasheet:
 * KVM ignores GATE in modes 0 and 4 (`pit_set_gate`: "XXX: just disable/enable counting" does
 * nothing, and counter 2's count runs from `count_load_time` regardless), reports OUT in mode 2 as
 * high only at the reload instant (`pit_get_out`: `d % count == 0`), which is the datasheet's
 * waveform inverted, never sets the status byte's null-count bit, and loads a count on the write
 * rather than on the next pulse. pit-guest.test.ts proves the first two on KVM with a guest.
 */

/** The 8254's input clock on a PC: 14.31818 MHz / 12 (the IBM PC's PIT clock, as QEMU's and KVM's PIT_FREQ). */
export const PIT_INPUT_HZ = 1_193_182;

const NS_PER_SECOND = 1_000_000_000;

/** Input-clock pulses from time 0 up to and including `ns` (exact for any `ns` below 2^53). */
export function ticksAt(ns: number): number {
  // Split at whole seconds so that no product passes 2^53.
  const seconds = Math.floor(ns / NS_PER_SECOND);
  const rest = ns - seconds * NS_PER_SECOND;
  return seconds * PIT_INPUT_HZ + Math.floor((rest * PIT_INPUT_HZ) / NS_PER_SECOND);
}

/** The first nanosecond at which pulse `tick` has happened: the least `ns` with `ticksAt(ns) >= tick`. */
export function tickTimeNs(tick: number): number {
  const seconds = Math.floor(tick / PIT_INPUT_HZ);
  const rest = tick - seconds * PIT_INPUT_HZ;
  return seconds * NS_PER_SECOND + Math.ceil((rest * NS_PER_SECOND) / PIT_INPUT_HZ);
}

/** The operating modes (control word bits 3-1, M2 M1 M0; 6 and 7 alias 2 and 3). */
const PitMode = {
  InterruptOnTerminalCount: 0,
  RetriggerableOneShot: 1,
  RateGenerator: 2,
  SquareWave: 3,
  SoftwareStrobe: 4,
  HardwareStrobe: 5,
} as const;

/** Control word bits 5-4 (RW1 RW0): how the count is read and written; 0 is the counter latch command. */
const PitAccess = { Latch: 0, LowByte: 1, HighByte: 2, LowThenHigh: 3 } as const;

/** Control word fields (datasheet, "Control Word Format"). */
const CONTROL_BCD = 0x01;
const CONTROL_MODE_SHIFT = 1;
const CONTROL_MODE_MASK = 0x7;
const CONTROL_ACCESS_SHIFT = 4;
const CONTROL_ACCESS_MASK = 0x3;
/** Bits 5-0 of a control word: what the status byte repeats exactly as written. */
const CONTROL_PROGRAMMED_BITS = 0x3f;
/** M2 is "don't care" in modes 2 and 3: modes 6 and 7 are 2 and 3 (datasheet, "Control Word Format"). */
const MODE_ALIAS_OFFSET = 4;
const HIGHEST_MODE = PitMode.HardwareStrobe;

/** Status byte (read-back command, datasheet "Status Byte"): OUTPUT, NULL COUNT, then the control bits. */
const STATUS_OUTPUT = 0x80;
const STATUS_NULL_COUNT = 0x40;

/** A count of 0 is the largest: 2^16 pulses in binary, 10^4 in BCD. */
const BINARY_MODULUS = 0x10000;
const BCD_MODULUS = 10_000;
/** Modes 2 and 3 need an initial count of at least 2 (datasheet, "Minimum and Maximum Initial Counts"). */
const MIN_PERIODIC_COUNT = 2;
const BYTE_MASK = 0xff;
const BITS_PER_BYTE = 8;
const BCD_DIGIT_BITS = 4;
const BCD_DIGITS = 4;
const DECIMAL_BASE = 10;
/** What an undriven data bus reads: a channel never programmed has nothing to put on it. */
const UNDRIVEN_BYTE = 0xff;

/** The guest's mistakes a channel meets, counted in the device's statistics. */
export interface PitChannelMistakes {
  /** A count of 1 in mode 2 or 3. */
  illegalCounts: number;
  /** A BCD count with a digit above 9. */
  invalidBcdCounts: number;
  /** A control word with mode 6 or 7. */
  modeAliases: number;
  /** A data-port access before any control word gave the channel an access mode. */
  unprogrammedAccesses: number;
}

export class PitChannel {
  /** RW1 RW0 of the last control word; Latch (0) until one is written. */
  private access: number = PitAccess.Latch;
  private mode: number = PitMode.InterruptOnTerminalCount;
  private bcd = false;
  private programmedBits = 0;

  /** The count register (CR): the initial count in pulses (1 .. 2^16, or 1 .. 10^4 in BCD), once written. */
  private initialCount: number | undefined;
  /** LSB-then-MSB writes: the low byte, while the high byte is awaited. */
  private pendingLowByte: number | undefined;
  /** LSB-then-MSB reads: the next read returns the high byte. */
  private readHighNext = false;
  private latchedCount: number | undefined;
  /** The access mode the latched count is read in (the one in force when it was latched). */
  private latchedCountAccess = 0;
  private latchedStatus: number | undefined;

  /** The CE is loaded and follows its mode from `anchor` on; otherwise it holds `heldValue`. */
  private counting = false;
  /** The pulse that loaded the CE with `length`. */
  private anchor = 0;
  private length = BINARY_MODULUS;
  /** Modes 0 and 4 with GATE low: counting stopped after this many pulses. */
  private pausedPulses: number | undefined;
  /**
   * The CE and OUT while not counting, and before the pulse that loads the CE. "After power-up,
   * the state of the 8254 is undefined" (datasheet): OUT starts high, so that a guest's first
   * control word for a periodic mode is no rising edge (no stray IRQ 0, as under KVM and crosvm).
   */
  private heldValue = 0;
  private heldOut = true;
  /** Modes 2 and 3: a count written while counting is loaded at this pulse (the period's or half cycle's end). */
  private reloadTick: number | undefined;
  /** That reload ends a high half cycle (mode 3): the new count starts with its low half. */
  private reloadStartsLow = false;
  /** NULL COUNT is set until this pulse (the one that loads the last count written); Infinity while no load is due. */
  private nullCountUntil = Number.POSITIVE_INFINITY;

  constructor(
    private gateLevel: boolean,
    private readonly mistakes: PitChannelMistakes,
  ) {}

  get gate(): boolean {
    return this.gateLevel;
  }

  // --- the guest's operations -----------------------------------------------------------------

  /** A control word selecting this channel (SC1 SC0 already decoded). */
  writeControl(word: number, tick: number): void {
    const access = (word >> CONTROL_ACCESS_SHIFT) & CONTROL_ACCESS_MASK;
    if (access === PitAccess.Latch) {
      this.latchCount(tick);
      return;
    }
    this.settle(tick);
    let mode = (word >> CONTROL_MODE_SHIFT) & CONTROL_MODE_MASK;
    if (mode > HIGHEST_MODE) {
      mode -= MODE_ALIAS_OFFSET;
      this.mistakes.modeAliases++;
    }
    // "When a Control Word is written to a Counter, all Control Logic is immediately reset and OUT
    // goes to a known initial state": low in mode 0, high in the others. The CE keeps its contents.
    this.hold(tick, mode !== PitMode.InterruptOnTerminalCount);
    this.access = access;
    this.mode = mode;
    this.bcd = (word & CONTROL_BCD) !== 0;
    this.programmedBits = word & CONTROL_PROGRAMMED_BITS;
    this.initialCount = undefined;
    this.pendingLowByte = undefined;
    this.readHighNext = false;
    // Reprogramming releases a latched count ("held until read or the Counter is reprogrammed").
    this.latchedCount = undefined;
    this.latchedStatus = undefined;
    this.nullCountUntil = Number.POSITIVE_INFINITY;
  }

  /** Counter latch command, or a read-back's count latch: ignored while a latched count is unread. */
  latchCount(tick: number): void {
    if (this.latchedCount !== undefined || this.access === PitAccess.Latch) return;
    this.latchedCount = this.displayedCount(tick);
    this.latchedCountAccess = this.access;
    this.readHighNext = false;
  }

  /** Read-back's status latch: ignored while a latched status is unread. */
  latchStatus(tick: number): void {
    if (this.latchedStatus !== undefined) return;
    this.settle(tick);
    this.latchedStatus = (this.output(tick) ? STATUS_OUTPUT : 0) | (tick < this.nullCountUntil ? STATUS_NULL_COUNT : 0) | this.programmedBits;
  }

  /** A byte written to the channel's data port. */
  writeData(byte: number, tick: number): void {
    this.settle(tick);
    switch (this.access) {
      case PitAccess.LowByte:
        this.writeCount(byte, tick);
        return;
      case PitAccess.HighByte:
        this.writeCount(byte << BITS_PER_BYTE, tick);
        return;
      case PitAccess.LowThenHigh:
        if (this.pendingLowByte === undefined) {
          this.pendingLowByte = byte;
          // Mode 0: "Writing the first byte disables counting. OUT is set low immediately."
          if (this.mode === PitMode.InterruptOnTerminalCount) this.hold(tick, false);
          return;
        }
        this.writeCount(this.pendingLowByte | (byte << BITS_PER_BYTE), tick);
        this.pendingLowByte = undefined;
        return;
      default:
        this.mistakes.unprogrammedAccesses++;
    }
  }

  /** A read of the channel's data port: a latched status first, then a latched count, else the live count. */
  readData(tick: number): number {
    this.settle(tick);
    if (this.latchedStatus !== undefined) {
      const status = this.latchedStatus;
      this.latchedStatus = undefined;
      return status;
    }
    if (this.access === PitAccess.Latch) {
      this.mistakes.unprogrammedAccesses++;
      return UNDRIVEN_BYTE;
    }
    if (this.latchedCount === undefined) return this.countByte(this.displayedCount(tick), this.access);
    const byte = this.countByte(this.latchedCount, this.latchedCountAccess);
    // The latch is released once read in full: one byte, or both of an LSB-then-MSB count.
    if (this.latchedCountAccess !== PitAccess.LowThenHigh || !this.readHighNext) this.latchedCount = undefined;
    return byte;
  }

  /** The channel's GATE input: fixed high for channels 0 and 1, port 0x61 bit 0 for channel 2. */
  setGate(level: boolean, tick: number): void {
    this.settle(tick);
    if (level === this.gateLevel) return;
    this.gateLevel = level;
    switch (this.mode) {
      case PitMode.InterruptOnTerminalCount:
      case PitMode.SoftwareStrobe:
        if (this.counting) this.pause(level, tick);
        break;
      case PitMode.RetriggerableOneShot:
      case PitMode.HardwareStrobe:
        // A trigger loads the count; OUT keeps its level until the pulse that loads it.
        if (level && this.initialCount !== undefined) this.load(tick, this.output(tick));
        break;
      default:
        // Modes 2 and 3: a trigger reloads the count; GATE low stops counting and sets OUT high.
        if (level && this.initialCount !== undefined) this.load(tick, true);
        else if (!level) this.hold(tick, true);
    }
  }

  // --- observation, for the device ------------------------------------------------------------

  /** OUT at pulse `tick`. */
  output(tick: number): boolean {
    const pulses = this.pulsesAt(tick);
    if (!this.counting || pulses < 0) return this.heldOut;
    const n = this.currentLength(tick);
    switch (this.mode) {
      case PitMode.InterruptOnTerminalCount:
      case PitMode.RetriggerableOneShot:
        return pulses >= n;
      case PitMode.RateGenerator:
        return pulses % n !== n - 1;
      case PitMode.SquareWave:
        return pulses % n < highPulses(n);
      default:
        return pulses !== n;
    }
  }

  /** Rising edges of OUT at pulses in (fromTick, toTick] that counting produces (not those of a write or GATE change). */
  risingEdges(fromTick: number, toTick: number): number {
    if (!this.counting || toTick <= fromTick) return 0;
    const reload = this.reloadTick;
    if (reload === undefined || reload > toTick) return this.edgesBetween(this.anchor, this.length, fromTick, toTick);
    // The current count runs up to the reload (an edge there, at a period's end, is its own);
    // the count written meanwhile runs from there.
    return this.edgesBetween(this.anchor, this.length, fromTick, reload) + this.edgesBetween(this.reloadAnchor(), this.initialLength(), Math.max(fromTick, reload), toTick);
  }

  /** The first pulse after `tick` at which counting makes OUT rise, if any is due. */
  nextRisingEdge(tick: number): number | undefined {
    if (!this.counting || this.pausedPulses !== undefined) return undefined;
    const reload = this.reloadTick;
    if (reload !== undefined && reload <= tick) return this.nextEdgeOf(this.reloadAnchor(), this.initialLength(), tick);
    const edge = this.nextEdgeOf(this.anchor, this.length, tick);
    if (reload === undefined || (edge !== undefined && edge <= reload)) return edge;
    return this.nextEdgeOf(this.reloadAnchor(), this.initialLength(), reload);
  }

  /** Applies a reload that is due by `tick`. Time only moves forward: every operation settles first. */
  settle(tick: number): void {
    if (this.reloadTick === undefined || this.reloadTick > tick) return;
    this.anchor = this.reloadAnchor();
    this.length = this.initialLength();
    this.reloadTick = undefined;
  }

  // --- the counting element -------------------------------------------------------------------

  private writeCount(raw: number, tick: number): void {
    const length = this.decodeCount(raw);
    const periodic = this.mode === PitMode.RateGenerator || this.mode === PitMode.SquareWave;
    if (periodic && length < MIN_PERIODIC_COUNT) this.mistakes.illegalCounts++;
    this.initialCount = length;
    switch (this.mode) {
      case PitMode.InterruptOnTerminalCount:
        // OUT goes low on the write and stays low until the new count runs out.
        this.load(tick, false);
        return;
      case PitMode.SoftwareStrobe:
        this.load(tick, this.output(tick));
        return;
      case PitMode.RetriggerableOneShot:
      case PitMode.HardwareStrobe:
        // Loaded by the next trigger only.
        this.nullCountUntil = Number.POSITIVE_INFINITY;
        return;
      default:
        if (this.counting && this.pulsesAt(tick) >= 0) this.scheduleReload(tick);
        else if (this.gateLevel) this.load(tick, true);
        else this.nullCountUntil = Number.POSITIVE_INFINITY;
    }
  }

  /** Loads the count register into the CE on the pulse after `tick`; OUT is `outUntilLoaded` until then. */
  private load(tick: number, outUntilLoaded: boolean): void {
    this.heldValue = this.countAt(tick);
    this.heldOut = outUntilLoaded;
    this.counting = true;
    this.anchor = tick + 1;
    this.length = this.initialLength();
    this.reloadTick = undefined;
    // Modes 0 and 4 load with GATE low too, but do not count until it rises.
    this.pausedPulses = this.gateLevel ? undefined : 0;
    this.nullCountUntil = tick + 1;
  }

  /** Stops counting: the CE holds its value at `tick`, OUT becomes `out`. */
  private hold(tick: number, out: boolean): void {
    this.heldValue = this.countAt(tick);
    this.heldOut = out;
    this.counting = false;
    this.pausedPulses = undefined;
    this.reloadTick = undefined;
  }

  /** Modes 0 and 4: GATE low freezes the pulse count; GATE high resumes from the next pulse. */
  private pause(gateHigh: boolean, tick: number): void {
    const pulses = this.pulsesAt(tick);
    if (!gateHigh) {
      this.pausedPulses = Math.max(pulses, 0);
      return;
    }
    this.pausedPulses = undefined;
    if (pulses >= 0) this.anchor = tick - pulses;
  }

  /** Modes 2 and 3: a count written while counting takes over at the end of the current period / half cycle. */
  private scheduleReload(tick: number): void {
    const n = this.length;
    const pulses = this.pulsesAt(tick);
    const periodStart = pulses - (pulses % n);
    const high = highPulses(n);
    this.reloadStartsLow = this.mode === PitMode.SquareWave && pulses % n < high;
    this.reloadTick = this.anchor + periodStart + (this.reloadStartsLow ? high : n);
    this.nullCountUntil = this.reloadTick;
  }

  /** Where the reloaded count's pulses start counting from: its low half in mode 3 after a high half. */
  private reloadAnchor(): number {
    const start = this.reloadStartsLow ? highPulses(this.initialLength()) : 0;
    return (this.reloadTick ?? 0) - start;
  }

  private initialLength(): number {
    return this.initialCount ?? this.modulus();
  }

  /** Pulses since the CE was loaded (negative before the loading pulse), frozen while paused. */
  private pulsesAt(tick: number): number {
    const pulses = tick - (this.reloadTick !== undefined && tick >= this.reloadTick ? this.reloadAnchor() : this.anchor);
    return this.pausedPulses === undefined ? pulses : Math.min(pulses, this.pausedPulses);
  }

  private currentLength(tick: number): number {
    return this.reloadTick !== undefined && tick >= this.reloadTick ? this.initialLength() : this.length;
  }

  /** The CE's value at `tick`, in pulses (0 stands for the modulus). */
  private countAt(tick: number): number {
    const pulses = this.pulsesAt(tick);
    if (!this.counting || pulses < 0) return this.heldValue;
    const n = this.currentLength(tick);
    const modulus = this.modulus();
    switch (this.mode) {
      case PitMode.RateGenerator:
        return (n - (pulses % n)) % modulus;
      case PitMode.SquareWave:
        return squareWaveCount(n, pulses) % modulus;
      default:
        // Modes 0, 1, 4 and 5 wrap to the highest count and go on counting.
        return (((n - pulses) % modulus) + modulus) % modulus;
    }
  }

  /** The CE as the data port shows it: binary, or four BCD digits. */
  private displayedCount(tick: number): number {
    const value = this.countAt(tick) % this.modulus();
    return this.bcd ? toBcd(value) : value;
  }

  private countByte(count: number, access: number): number {
    switch (access) {
      case PitAccess.LowByte:
        return count & BYTE_MASK;
      case PitAccess.HighByte:
        return (count >> BITS_PER_BYTE) & BYTE_MASK;
      default: {
        const high = this.readHighNext;
        this.readHighNext = !high;
        return high ? (count >> BITS_PER_BYTE) & BYTE_MASK : count & BYTE_MASK;
      }
    }
  }

  /** Rising edges of OUT in (fromTick, toTick] on a timeline loaded at `anchor` with `n`. */
  private edgesBetween(anchor: number, n: number, fromTick: number, toTick: number): number {
    const from = Math.max(fromTick - anchor, 0);
    let to = toTick - anchor;
    if (this.pausedPulses !== undefined) to = Math.min(to, this.pausedPulses);
    if (to <= from) return 0;
    switch (this.mode) {
      case PitMode.RateGenerator:
      case PitMode.SquareWave:
        // A count of 1 (illegal) leaves OUT low in mode 2 and high in mode 3: no edges.
        return n < MIN_PERIODIC_COUNT ? 0 : Math.floor(to / n) - Math.floor(from / n);
      default: {
        const edge = oneShotEdge(this.mode, n);
        return from < edge && edge <= to ? 1 : 0;
      }
    }
  }

  private nextEdgeOf(anchor: number, n: number, tick: number): number | undefined {
    const pulses = Math.max(tick - anchor, 0);
    switch (this.mode) {
      case PitMode.RateGenerator:
      case PitMode.SquareWave:
        return n < MIN_PERIODIC_COUNT ? undefined : anchor + (Math.floor(pulses / n) + 1) * n;
      default: {
        const edge = anchor + oneShotEdge(this.mode, n);
        return edge > tick ? edge : undefined;
      }
    }
  }

  /** The count register's bytes as a length in pulses: 0 is the largest count; BCD digits above 9 count at face value. */
  private decodeCount(raw: number): number {
    if (!this.bcd) return raw === 0 ? BINARY_MODULUS : raw;
    let value = 0;
    let invalid = false;
    for (let digit = BCD_DIGITS - 1; digit >= 0; digit--) {
      const digitValue = (raw >> (digit * BCD_DIGIT_BITS)) & 0xf;
      if (digitValue >= DECIMAL_BASE) invalid = true;
      value = value * DECIMAL_BASE + digitValue;
    }
    // A real decade counter counts an invalid digit down through its face value (0xA0 reaches 0x99
    // after one pulse); the datasheet leaves it undefined, so the count is kept within 10^4.
    if (invalid) this.mistakes.invalidBcdCounts++;
    value %= BCD_MODULUS;
    return value === 0 ? BCD_MODULUS : value;
  }

  private modulus(): number {
    return this.bcd ? BCD_MODULUS : BINARY_MODULUS;
  }
}

/** Mode 3's high half: (N + 1) / 2 pulses for an odd N, N / 2 for an even one. */
function highPulses(n: number): number {
  return Math.ceil(n / 2);
}

/**
 * Mode 3's CE (datasheet, "Mode 3"): an even N is loaded and decremented by two, reloaded at the
 * end of each half; an odd N loads N - 1, and its high half lasts one pulse longer (the CE reads 0
 * for that pulse).
 */
function squareWaveCount(n: number, pulses: number): number {
  if (n % 2 === 0) return n - 2 * (pulses % (n / 2));
  const phase = pulses % n;
  const high = highPulses(n);
  return n - 1 - 2 * (phase < high ? phase : phase - high);
}

/** The pulse (from the load) at which OUT rises once: terminal count in modes 0 and 1, the strobe's end in 4 and 5. */
function oneShotEdge(mode: number, n: number): number {
  return mode === PitMode.SoftwareStrobe || mode === PitMode.HardwareStrobe ? n + 1 : n;
}

function toBcd(value: number): number {
  let bcd = 0;
  let rest = value;
  for (let digit = 0; digit < BCD_DIGITS; digit++) {
    bcd |= (rest % DECIMAL_BASE) << (digit * BCD_DIGIT_BITS);
    rest = Math.floor(rest / DECIMAL_BASE);
  }
  return bcd;
}
