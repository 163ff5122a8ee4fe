/**
 * Test support for the 8254 PIT: a PIT on a virtual clock whose IRQ 0 line is recorded, and the
 * guest's port accesses and the datasheet's commands as helpers. Not part of the API.
 */

import { VirtualClock } from '../../base/clock.ts';
import { Port } from '../machine-layout.ts';
import { Pit8254 } from './pit-8254.ts';
import { tickTimeNs } from './pit-channel.ts';

/** Control words (Intel 8254 datasheet, "Control Word Format"): SC1 SC0, RW1 RW0 = LSB then MSB, the mode, binary. */
export function controlWord(channel: number, mode: number, options: { readonly access?: number; readonly bcd?: boolean } = {}): number {
  return (channel << 6) | ((options.access ?? 3) << 4) | (mode << 1) | (options.bcd === true ? 1 : 0);
}

/** Read-back command: latch the status (and/or count) of the channels in `channels` (bit n = channel n). */
export function readBack(channels: number, latch: { readonly count: boolean; readonly status: boolean }): number {
  return 0xc0 | (latch.count ? 0 : 0x20) | (latch.status ? 0 : 0x10) | (channels << 1);
}

/** Status byte bits. */
export const STATUS_OUTPUT = 0x80;
export const STATUS_NULL_COUNT = 0x40;
/** Port 0x61 bits. */
export const PORT_B_GATE2 = 0x01;
export const PORT_B_SPEAKER = 0x02;
export const PORT_B_REFRESH = 0x10;
export const PORT_B_OUT2 = 0x20;

export interface TestPit {
  readonly pit: Pit8254;
  readonly clock: VirtualClock;
  /** Every level the PIT set on IRQ 0, in order. */
  readonly levels: boolean[];
  /** Moves the clock to the first instant of input pulse `tick` (never backwards). */
  at(tick: number): void;
  outb(port: number, value: number): void;
  inb(port: number): number;
  /** Programs a channel: control word, then the count LSB then MSB. */
  program(channel: number, mode: number, count: number, options?: { readonly bcd?: boolean }): void;
  /** The channel's count through the counter latch command (LSB then MSB access). */
  latchedCount(channel: number): number;
  /** The channel's status byte through the read-back command. */
  status(channel: number): number;
  /** OUT of a channel, from its status byte. */
  output(channel: number): boolean;
  /** IRQ 0 pulses so far (rising edges of the line). */
  pulses(): number;
}

export function makeTestPit(): TestPit {
  const clock = new VirtualClock();
  const levels: boolean[] = [];
  const pit = new Pit8254({ clock, irqLine: { setLevel: (level) => levels.push(level) } });
  const outb = (port: number, value: number): void => {
    if (port === Port.SystemControlB) pit.systemControlPort.write(0, 1, value);
    else pit.write(port - Port.Pit, 1, value);
  };
  const inb = (port: number): number => (port === Port.SystemControlB ? pit.systemControlPort.read(0, 1) : pit.read(port - Port.Pit, 1));
  const controlPort = Port.Pit + 3;
  const status = (channel: number): number => {
    outb(controlPort, readBack(1 << channel, { count: false, status: true }));
    return inb(Port.Pit + channel);
  };
  return {
    pit,
    clock,
    levels,
    at: (tick) => {
      clock.advance(tickTimeNs(tick) - clock.nowNs());
    },
    outb,
    inb,
    program: (channel, mode, count, options = {}) => {
      outb(controlPort, controlWord(channel, mode, options));
      outb(Port.Pit + channel, count & 0xff);
      outb(Port.Pit + channel, count >> 8);
    },
    latchedCount: (channel) => {
      outb(controlPort, channel << 6);
      const low = inb(Port.Pit + channel);
      return low | (inb(Port.Pit + channel) << 8);
    },
    status,
    output: (channel) => (status(channel) & STATUS_OUTPUT) !== 0,
    pulses: () => levels.filter((level) => level).length,
  };
}
