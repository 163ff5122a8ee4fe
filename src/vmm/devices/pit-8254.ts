/**
 * `Pit8254`: the PC's 8254 programmable interval timer on the split and userspace chips, as
 * crosvm's userspace PIT (devices/src/pit.rs) and QEMU's `isa-pit` serve it: channels 0-2 at
 * ports 0x40-0x42, the control word at 0x43 (Intel 8254 datasheet, order 231164), and port 0x61
 * (`systemControlPort`) for channel 2's GATE and OUT. Channel 0's OUT drives IRQ 0 (GSI 0); the
 * kernel chip uses KVM's in-kernel PIT instead (src/kvm/kvm-pit.ts). One channel's timing model
 * is pit-channel.ts.
 *
 * **IRQ 0 is a pulse at each rising edge of OUT0.** The 8259A's IR inputs (edge mode, which the
 * PC's IRQ 0 always is: its ELCR bit is hardwired to edge) and an edge-triggered IOAPIC pin both
 * latch one interrupt per low-to-high transition, and nothing else of OUT's waveform reaches
 * them. So each rising edge raises and lowers the line at once (crosvm writes an edge irqfd;
 * QEMU's `isa-pit` instead sets the line to OUT's level at every transition). Following the level
 * would cost two timer events per period and is not even schedulable in mode 2, whose low phase
 * lasts one input pulse (838 ns); the pulse leaves the line low between edges, so each one is a
 * fresh edge for both controllers, and one timer event per period suffices. Edges that a write
 * causes count too: a control word sets OUT high at once in modes 1-5, so programming mode 2 or 3
 * while OUT is low (after mode 0, or in mode 3's low half) raises IRQ 0, as it does on hardware.
 * KVM's in-kernel PIT raises IRQ 0 only from its timer.
 *
 * **Late owners: missed edges coalesce.** The owner calls `advance()` at or after `nextEventNs()`
 * (`startPitTimer` does, with setTimeout). When it comes late and several edges passed, the line
 * is pulsed once: the 8259A's IRR and the local APIC's IRR hold one pending interrupt per input
 * anyway, so delivering the backlog as a burst would be coalesced there, and a guest keeps time by
 * reading a clock (Linux reads its clocksource, not IRQ 0 counts). The extra edges are counted in
 * `coalescedTicks`. KVM's in-kernel PIT instead re-injects missed ticks one by one after each
 * acknowledgement (its default "reinject" policy; kvm-pit.ts turns it off): pit-guest.test.ts
 * shows both.
 *
 * Accesses are byte-wide: QEMU's PIT and speaker regions take single bytes, so a word access
 * reads or writes consecutive ports (port-device.ts). The device is single-threaded: it lives on
 * the VMM's device thread, and so does its timer.
 */

import type { Clock } from '../../base/clock.ts';
import { ErrorCode, IrqChipError } from '../../base/errors.ts';
import { Port } from '../machine-layout.ts';
import type { IrqLine } from './irq-line.ts';
import { PitChannel, ticksAt, tickTimeNs, type PitChannelMistakes } from './pit-channel.ts';
import { PortDevice } from './port-device.ts';

export { PIT_INPUT_HZ } from './pit-channel.ts';

export const PIT_COUNTER_NAMES = [
  /** Pulses of IRQ 0: rising edges of channel 0's OUT delivered. */
  'ticks',
  /** Rising edges of OUT0 that passed while the owner was late, merged into the next pulse. */
  'coalescedTicks',
  /** A count of 1 in mode 2 or 3 (the datasheet's minimum is 2): OUT then stays low (2) or high (3). */
  'illegalCounts',
  /** A BCD count with a digit above 9 (counted at the digit's face value). */
  'invalidBcdCounts',
  /** A control word with mode 6 or 7 (M2 set), which the 8254 takes as 2 or 3. */
  'modeAliases',
  /** A channel's data port used before any control word set its access mode (reads see an undriven bus). */
  'unprogrammedAccesses',
  /** Reads of the write-only control word register (port 0x43): an undriven bus, all ones. */
  'controlPortReads',
  /** A read-back command with bit 0 set (reserved: must be 0). */
  'reservedReadBackBits',
  /** Accesses reaching past port 0x43 (those lanes read 0xff and are dropped). */
  'accessesPastEnd',
] as const;
export type PitCounterName = (typeof PIT_COUNTER_NAMES)[number];

export const SYSTEM_CONTROL_PORT_COUNTER_NAMES = [
  /** Writes with bit 6 or 7 set: read-only NMI status bits, which always read 0 here. */
  'readOnlyBitWrites',
  /** Accesses reaching past port 0x61. */
  'accessesPastEnd',
] as const;
export type SystemControlPortCounterName = (typeof SYSTEM_CONTROL_PORT_COUNTER_NAMES)[number];

export interface Pit8254Options {
  /** The time the channels count (the VMM's host clock; tests pass a `VirtualClock`). */
  readonly clock: Clock;
  /** GSI 0, which channel 0's OUT pulses. */
  readonly irqLine: IrqLine;
}

const CHANNEL_COUNT = 3;
/** Port offsets: the channels' data ports, then the control word register. */
const CONTROL_PORT = 3;
/** Control word bits 7-6 (SC1 SC0) select the channel; 3 is the read-back command. */
const SELECT_SHIFT = 6;
const SELECT_READ_BACK = 3;
/** Read-back command (datasheet, "Read-Back Command"): COUNT# and STATUS# are active low; bit 1 + n selects channel n. */
const READ_BACK_SKIP_COUNT = 0x20;
const READ_BACK_SKIP_STATUS = 0x10;
const READ_BACK_FIRST_CHANNEL_BIT = 0x02;
const READ_BACK_RESERVED = 0x01;
/** The PIT's and port 0x61's registers are byte-wide (QEMU `impl.max_access_size = 1`). */
const BYTE_PIECES = 1;
const UNDRIVEN_BYTE = 0xff;
/** Channel 2's GATE is port 0x61 bit 0; channels 0 and 1 have theirs tied high on a PC. */
const CHANNEL_2 = 2;

type MistakeCounts = PitChannelMistakes & Record<Exclude<PitCounterName, 'accessesPastEnd'>, number>;

export class Pit8254 extends PortDevice {
  readonly busName = 'pit-8254';
  /**
   * Port 0x61 (machine-layout.ts `Port.SystemControlB`, `portBytes` long): place it on the I/O bus
   * beside the PIT itself (`Port.Pit`, `portBytes` long).
   */
  readonly systemControlPort: SystemControlPortB;
  private readonly clock: Clock;
  private readonly irqLine: IrqLine;
  private readonly counts: MistakeCounts = {
    ticks: 0,
    coalescedTicks: 0,
    illegalCounts: 0,
    invalidBcdCounts: 0,
    modeAliases: 0,
    unprogrammedAccesses: 0,
    controlPortReads: 0,
    reservedReadBackBits: 0,
  };
  private readonly channels: readonly PitChannel[];
  /** Channel 0: the PC's system timer, on IRQ 0. */
  private readonly systemTimer: PitChannel;
  /** OUT0's edges up to this pulse have been delivered (or coalesced). */
  private accountedTick: number;
  private scheduleListener: (() => void) | undefined;

  constructor(options: Pit8254Options) {
    super(Port.PitBytes, BYTE_PIECES);
    if (typeof options.clock.nowNs !== 'function') throw new IrqChipError(ErrorCode.EINVAL, 'the PIT needs a Clock');
    if (typeof options.irqLine.setLevel !== 'function') throw new IrqChipError(ErrorCode.EINVAL, 'the PIT needs an IrqLine for GSI 0');
    this.clock = options.clock;
    this.irqLine = options.irqLine;
    this.channels = Array.from({ length: CHANNEL_COUNT }, (_, index) => new PitChannel(index !== CHANNEL_2, this.counts));
    this.systemTimer = this.channel(0);
    this.accountedTick = ticksAt(this.clock.nowNs());
    this.systemControlPort = new SystemControlPortB(this.channel(CHANNEL_2), () => this.currentTick());
  }

  counters(): Readonly<Record<PitCounterName, number>> {
    return { ...this.counts, accessesPastEnd: this.accessesPastEnd };
  }

  /** When channel 0's OUT next rises (nanoseconds on the PIT's clock), or undefined when no edge is due. */
  nextEventNs(): number | undefined {
    const edge = this.systemTimer.nextRisingEdge(this.accountedTick);
    return edge === undefined ? undefined : tickTimeNs(edge);
  }

  /** Delivers what is due: one IRQ 0 pulse if OUT0 rose since the last call (several edges count as one). */
  advance(): void {
    this.currentTick();
  }

  /**
   * Who to tell when a guest write moved `nextEventNs()` (one owner: `startPitTimer`); undefined
   * detaches it. EBUSY while another listener is attached.
   */
  setScheduleListener(listener: (() => void) | undefined): void {
    if (listener !== undefined && this.scheduleListener !== undefined) throw new IrqChipError(ErrorCode.EBUSY, 'the PIT already has a timer driving it');
    this.scheduleListener = listener;
  }

  protected readPiece(offset: number): number {
    const tick = this.currentTick();
    if (offset !== CONTROL_PORT) return this.channel(offset).readData(tick);
    this.counts.controlPortReads++;
    return UNDRIVEN_BYTE;
  }

  protected writePiece(offset: number, _size: number, value: number): void {
    const tick = this.currentTick();
    const scheduled = this.systemTimer.nextRisingEdge(tick);
    const outputBefore = this.systemTimer.output(tick);
    if (offset === CONTROL_PORT) this.writeControl(value, tick);
    else this.channel(offset).writeData(value, tick);
    // A rising edge caused by the write itself (a control word sets OUT high in modes 1-5).
    if (!outputBefore && this.systemTimer.output(tick)) this.pulse();
    if (this.systemTimer.nextRisingEdge(tick) !== scheduled) this.scheduleListener?.();
  }

  private writeControl(word: number, tick: number): void {
    const select = word >> SELECT_SHIFT;
    if (select !== SELECT_READ_BACK) {
      this.channel(select).writeControl(word, tick);
      return;
    }
    if ((word & READ_BACK_RESERVED) !== 0) this.counts.reservedReadBackBits++;
    // One command latches any set of channels, each as its own latch command would.
    for (const [index, channel] of this.channels.entries()) {
      if ((word & (READ_BACK_FIRST_CHANNEL_BIT << index)) === 0) continue;
      if ((word & READ_BACK_SKIP_COUNT) === 0) channel.latchCount(tick);
      if ((word & READ_BACK_SKIP_STATUS) === 0) channel.latchStatus(tick);
    }
  }

  /** The current input-clock pulse, after delivering OUT0's edges up to it. */
  private currentTick(): number {
    const tick = ticksAt(this.clock.nowNs());
    if (tick <= this.accountedTick) return tick;
    const edges = this.systemTimer.risingEdges(this.accountedTick, tick);
    this.accountedTick = tick;
    this.systemTimer.settle(tick);
    if (edges > 0) {
      this.counts.coalescedTicks += edges - 1;
      this.pulse();
    }
    return tick;
  }

  /** One IRQ 0 interrupt: a rising edge for the 8259A and the IOAPIC, and the line low again. */
  private pulse(): void {
    this.counts.ticks++;
    this.irqLine.setLevel(true);
    this.irqLine.setLevel(false);
  }

  private channel(index: number): PitChannel {
    const channel = this.channels[index];
    if (channel === undefined) throw new IrqChipError(ErrorCode.EINVAL, `the PIT has no channel ${index}`);
    return channel;
  }
}

/** Port 0x61 bits (PIIX4 datasheet, "NMI Status and Control Register"; QEMU hw/audio/pcspk.c). */
const PortB = {
  /** R/W: channel 2's GATE. */
  Gate2: 0x01,
  /** R/W: speaker data enable (stored; there is no speaker). */
  SpeakerData: 0x02,
  /** RO: toggles with each DRAM refresh request. */
  RefreshToggle: 0x10,
  /** RO: channel 2's OUT. */
  Out2: 0x20,
  /** RO: the IOCHK# and SERR# NMI sources, which this machine does not have: they read 0. */
  NmiSources: 0xc0,
} as const;
/**
 * Pulses between refresh requests: a PC BIOS programs channel 1 as a rate generator with count 18
 * (15.09 µs) for DRAM refresh. The toggle runs from the clock whatever channel 1 does, as KVM's
 * (`ktime >> 14`, 16.4 µs) and crosvm's (15 µs) do, so software that waits on it never hangs.
 */
const REFRESH_PERIOD_TICKS = 18;

/**
 * Port 0x61, system control port B, as QEMU's `pcspk` and KVM's `KVM_PIT_SPEAKER_DUMMY` present
 * it: channel 2's GATE (bit 0) and the speaker data enable (bit 1) are read/write; channel 2's OUT
 * (bit 5) and the refresh toggle (bit 4) are read-only. Bits 2-3 (the SERR# and IOCHK# NMI
 * enables) take writes and read 0, as QEMU's and KVM's do: no NMI source exists to enable.
 * Linux's `pit_calibrate_tsc` programs channel 2 in mode 0 with GATE high and polls bit 5.
 */
export class SystemControlPortB extends PortDevice {
  readonly busName = 'system-control-port-b';
  private speakerData = false;
  private readOnlyBitWrites = 0;

  /** Made by `Pit8254`, whose channel 2 it shows; `currentTick` also delivers the PIT's due edges. */
  constructor(
    private readonly channel2: PitChannel,
    private readonly currentTick: () => number,
  ) {
    super(1, BYTE_PIECES);
  }

  counters(): Readonly<Record<SystemControlPortCounterName, number>> {
    return { readOnlyBitWrites: this.readOnlyBitWrites, accessesPastEnd: this.accessesPastEnd };
  }

  protected readPiece(): number {
    const tick = this.currentTick();
    const refresh = Math.floor(tick / REFRESH_PERIOD_TICKS) % 2 === 1;
    return (
      (this.channel2.gate ? PortB.Gate2 : 0) |
      (this.speakerData ? PortB.SpeakerData : 0) |
      (refresh ? PortB.RefreshToggle : 0) |
      (this.channel2.output(tick) ? PortB.Out2 : 0)
    );
  }

  protected writePiece(_offset: number, _size: number, value: number): void {
    // Bits 4-5 written back by a read-modify-write (Linux's calibration does one) are not a
    // mistake; bits 6-7 always read 0 here, so a 1 there never came from a read.
    if ((value & PortB.NmiSources) !== 0) this.readOnlyBitWrites++;
    this.speakerData = (value & PortB.SpeakerData) !== 0;
    this.channel2.setGate((value & PortB.Gate2) !== 0, this.currentTick());
  }
}
