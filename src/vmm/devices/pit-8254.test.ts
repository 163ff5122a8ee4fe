/**
 * The 8254 PIT against the Intel 8254 datasheet (order 231164): every mode's OUT waveform and
 * count at chosen input pulses, the latch and read-back commands, BCD, the access modes, GATE,
 * port 0x61 (Linux's TSC calibration pattern on channel 2), IRQ 0 pulses, coalescing, and the
 * guest's mistakes. Time is a virtual clock; pulse k starts at `tickTimeNs(k)`. A count written
 * at pulse w is loaded at pulse w + 1, so below "p" (pulses since loading) is tick - 1.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Clock } from '../../base/clock.ts';
import { ErrorCode } from '../../base/errors.ts';
import { assertIrqChipError } from '../../testing/irq-chip-error.ts';
import { Port } from '../machine-layout.ts';
import { Pit8254 } from './pit-8254.ts';
import { PIT_INPUT_HZ, ticksAt, tickTimeNs } from './pit-channel.ts';
import {
  PORT_B_GATE2,
  PORT_B_OUT2,
  PORT_B_REFRESH,
  PORT_B_SPEAKER,
  STATUS_NULL_COUNT,
  STATUS_OUTPUT,
  controlWord,
  makeTestPit,
  readBack,
} from './pit-test-support.ts';

const CONTROL = Port.Pit + 3;
const CHANNEL_0 = Port.Pit;
const CHANNEL_2 = Port.Pit + 2;

describe('input clock', () => {
  test('pulse k starts at tickTimeNs(k): 1.193182 MHz, exact across seconds', () => {
    assert.equal(ticksAt(1e9), PIT_INPUT_HZ);
    assert.equal(ticksAt(1e9 - 1), PIT_INPUT_HZ - 1);
    for (const tick of [0, 1, 2, 1193, PIT_INPUT_HZ - 1, PIT_INPUT_HZ, 7 * PIT_INPUT_HZ + 596_591, 1e12]) {
      const ns = tickTimeNs(tick);
      assert.equal(ticksAt(ns), tick, `pulse ${tick} has happened at ${ns} ns`);
      assert.equal(ticksAt(ns - 1), tick - 1, `and not 1 ns earlier`);
    }
  });
});

describe('mode 0: interrupt on terminal count', () => {
  test('OUT low after the write, high N + 1 pulses later and stays high; the count wraps; one IRQ 0 pulse', () => {
    const t = makeTestPit();
    t.program(0, 0, 100);
    assert.equal(t.output(0), false);
    t.at(1);
    assert.equal(t.latchedCount(0), 100, 'loaded on the pulse after the write, without a decrement');
    t.at(41);
    assert.equal(t.latchedCount(0), 60);
    t.at(100);
    assert.equal(t.latchedCount(0), 1);
    assert.equal(t.output(0), false);
    assert.equal(t.pulses(), 0);
    t.at(101);
    assert.equal(t.output(0), true);
    assert.equal(t.latchedCount(0), 0);
    assert.equal(t.pulses(), 1);
    t.at(102);
    assert.equal(t.latchedCount(0), 0xffff, 'the counter wraps and goes on counting');
    t.at(500_000);
    assert.equal(t.output(0), true);
    assert.equal(t.pulses(), 1, 'one terminal count, one interrupt');
    assert.deepEqual(t.levels, [true, false], 'a pulse: raised and lowered');
  });

  test('writing the first byte of a two-byte count stops counting and sets OUT low; the second loads it', () => {
    const t = makeTestPit();
    t.program(0, 0, 10);
    t.at(20);
    assert.equal(t.output(0), true);
    t.outb(CHANNEL_0, 50);
    assert.equal(t.output(0), false, 'OUT low at once');
    t.at(30);
    assert.equal(t.latchedCount(0), 0xffff - 8, 'the CE holds where the first byte stopped it');
    t.outb(CHANNEL_0, 0);
    t.at(31 + 50);
    assert.equal(t.output(0), true);
    assert.equal(t.pulses(), 2);
  });

  test('nextEventNs is the terminal count; nothing is due afterwards', () => {
    const t = makeTestPit();
    assert.equal(t.pit.nextEventNs(), undefined, 'nothing programmed');
    t.program(0, 0, 100);
    assert.equal(t.pit.nextEventNs(), tickTimeNs(101));
    t.at(101);
    t.pit.advance();
    assert.equal(t.pulses(), 1);
    assert.equal(t.pit.nextEventNs(), undefined);
  });
});

describe('mode 2: rate generator', () => {
  test('counts N..1, OUT low for the one pulse at count 1, one IRQ 0 pulse per period at the rising edge', () => {
    const t = makeTestPit();
    const n = 10;
    t.program(0, 2, n);
    for (let tick = 1; tick <= 4 * n; tick++) {
      t.at(tick);
      const p = tick - 1;
      assert.equal(t.latchedCount(0), n - (p % n), `count at pulse ${tick}`);
      assert.equal(t.output(0), p % n !== n - 1, `OUT at pulse ${tick}`);
      assert.equal(t.pulses(), Math.floor(p / n), `IRQ 0 pulses by pulse ${tick}`);
    }
  });

  test('nextEventNs walks the rising edges; advancing on each delivers each, none coalesced', () => {
    const t = makeTestPit();
    t.program(0, 2, 1193);
    for (let period = 1; period <= 50; period++) {
      const due = t.pit.nextEventNs();
      assert.equal(due, tickTimeNs(1 + period * 1193));
      t.clock.advance(due - t.clock.nowNs());
      t.pit.advance();
      assert.equal(t.pulses(), period);
    }
    assert.equal(t.pit.counters().coalescedTicks, 0);
  });

  test('a late owner gets one pulse for every edge that passed, the rest counted as coalesced', () => {
    const t = makeTestPit();
    t.program(0, 2, 10);
    t.at(1000);
    t.pit.advance();
    // Edges at pulses 11, 21, ..., 991: 99 of them.
    assert.equal(t.pulses(), 1);
    assert.equal(t.pit.counters().coalescedTicks, 98);
    assert.equal(t.pit.counters().ticks, 1);
    t.at(1001);
    t.pit.advance();
    assert.equal(t.pulses(), 2, 'the edge at 1001 is a new one');
  });

  test('a count written while counting is loaded at the end of the current period', () => {
    const t = makeTestPit();
    t.program(0, 2, 100);
    t.at(51);
    t.outb(CHANNEL_0, 40);
    t.outb(CHANNEL_0, 0);
    t.at(60);
    assert.equal(t.latchedCount(0), 100 - 59, 'the current period goes on');
    assert.equal(t.status(0) & STATUS_NULL_COUNT, STATUS_NULL_COUNT, 'the new count is not loaded yet');
    t.at(101);
    assert.equal(t.latchedCount(0), 40);
    assert.equal(t.status(0) & STATUS_NULL_COUNT, 0);
    assert.equal(t.pulses(), 1, 'the period that was running ended with its edge');
    assert.equal(t.pit.nextEventNs(), tickTimeNs(141));
    t.at(181);
    t.pit.advance();
    assert.equal(t.pulses(), 2, 'edges at 141 and 181, delivered as one');
  });
});

describe('mode 3: square wave', () => {
  test('even N: high N/2 pulses, low N/2, the count decrements by two from N each half', () => {
    const t = makeTestPit();
    const n = 10;
    t.program(0, 3, n);
    for (let tick = 1; tick <= 3 * n; tick++) {
      t.at(tick);
      const p = tick - 1;
      assert.equal(t.output(0), p % n < n / 2, `OUT at pulse ${tick}`);
      assert.equal(t.latchedCount(0), n - 2 * (p % (n / 2)), `count at pulse ${tick}`);
      assert.equal(t.pulses(), Math.floor(p / n));
    }
  });

  test('odd N: high (N + 1)/2 pulses, low (N - 1)/2; N - 1 is loaded and the high half ends at 0', () => {
    const t = makeTestPit();
    t.program(0, 3, 7);
    const expected = [
      [6, true],
      [4, true],
      [2, true],
      [0, true],
      [6, false],
      [4, false],
      [2, false],
    ] as const;
    for (let tick = 1; tick <= 14; tick++) {
      t.at(tick);
      const [count, out] = expected[(tick - 1) % 7] ?? [-1, false];
      assert.equal(t.latchedCount(0), count, `count at pulse ${tick}`);
      assert.equal(t.output(0), out, `OUT at pulse ${tick}`);
    }
    assert.equal(t.pulses(), 1, 'the edge at pulse 8');
  });

  test('a count written in the high half takes over at its end, starting with its own low half', () => {
    const t = makeTestPit();
    t.program(0, 3, 100);
    t.at(21);
    t.outb(CHANNEL_0, 40);
    t.outb(CHANNEL_0, 0);
    t.at(50);
    assert.equal(t.output(0), true);
    t.at(51);
    assert.equal(t.output(0), false);
    assert.equal(t.latchedCount(0), 40);
    t.at(70);
    assert.equal(t.output(0), false);
    t.at(71);
    assert.equal(t.output(0), true);
    assert.equal(t.pulses(), 1);
    assert.equal(t.pit.nextEventNs(), tickTimeNs(111));
  });

  test('a count written in the low half takes over at the end of the period', () => {
    const t = makeTestPit();
    t.program(0, 3, 100);
    t.at(61);
    t.outb(CHANNEL_0, 40);
    t.outb(CHANNEL_0, 0);
    assert.equal(t.pit.nextEventNs(), tickTimeNs(101));
    t.at(101);
    assert.equal(t.output(0), true);
    assert.equal(t.latchedCount(0), 40);
    assert.equal(t.pit.nextEventNs(), tickTimeNs(141));
  });
});

describe('modes 4, 1 and 5', () => {
  test('mode 4: OUT strobes low for one pulse N + 1 pulses after the write; IRQ 0 at the strobe end', () => {
    const t = makeTestPit();
    t.program(0, 4, 5);
    assert.equal(t.pit.nextEventNs(), tickTimeNs(7));
    for (let tick = 1; tick <= 8; tick++) {
      t.at(tick);
      assert.equal(t.output(0), tick !== 6, `OUT at pulse ${tick}`);
    }
    assert.equal(t.pulses(), 1);
    assert.equal(t.pit.nextEventNs(), undefined);
    t.at(9);
    assert.equal(t.latchedCount(0), 0xffff - 2, 'wraps and counts on');
  });

  test('mode 1 on channel 2: a GATE rising edge starts the one-shot (OUT low for N pulses); it retriggers', () => {
    const t = makeTestPit();
    t.outb(Port.SystemControlB, 0);
    t.program(2, 1, 5);
    t.at(10);
    assert.equal(t.inb(Port.SystemControlB) & PORT_B_OUT2, PORT_B_OUT2, 'armed, OUT high');
    assert.equal(t.status(2) & STATUS_NULL_COUNT, STATUS_NULL_COUNT, 'not loaded before a trigger');
    t.outb(Port.SystemControlB, PORT_B_GATE2);
    const out2 = (tick: number): boolean => {
      t.at(tick);
      return (t.inb(Port.SystemControlB) & PORT_B_OUT2) !== 0;
    };
    assert.equal(out2(10), true, 'OUT falls on the pulse after the trigger');
    assert.equal(out2(11), false);
    assert.equal(out2(15), false);
    assert.equal(out2(16), true);
    // Retrigger at 20: low from 21 to 25.
    t.at(20);
    t.outb(Port.SystemControlB, 0);
    t.outb(Port.SystemControlB, PORT_B_GATE2);
    assert.equal(out2(21), false);
    t.at(23);
    t.outb(Port.SystemControlB, 0);
    t.outb(Port.SystemControlB, PORT_B_GATE2);
    assert.equal(out2(26), false, 'a retrigger during the one-shot restarts it');
    assert.equal(out2(29), true);
  });

  test('mode 5 on channel 2: the strobe comes N + 1 pulses after a GATE rising edge', () => {
    const t = makeTestPit();
    t.program(2, 5, 3);
    t.at(10);
    t.outb(Port.SystemControlB, PORT_B_GATE2);
    const out2 = (tick: number): boolean => {
      t.at(tick);
      return (t.inb(Port.SystemControlB) & PORT_B_OUT2) !== 0;
    };
    assert.deepEqual([11, 12, 13, 14, 15].map(out2), [true, true, true, false, true]);
  });

  test('modes 1 and 5 never fire on channel 0, whose GATE is tied high (no trigger ever comes)', () => {
    const t = makeTestPit();
    t.program(0, 1, 5);
    t.at(100);
    assert.equal(t.output(0), true);
    assert.equal(t.pit.nextEventNs(), undefined);
    assert.equal(t.pulses(), 0);
  });
});

describe('GATE (channel 2, port 0x61 bit 0)', () => {
  test('mode 0: GATE low holds the count and GATE high resumes it (KVM keeps counting: pit-guest.test.ts)', () => {
    const t = makeTestPit();
    t.outb(Port.SystemControlB, PORT_B_GATE2);
    t.program(2, 0, 1000);
    t.at(101);
    assert.equal(t.latchedCount(2), 900);
    t.outb(Port.SystemControlB, 0);
    t.at(500);
    assert.equal(t.latchedCount(2), 900, 'held');
    t.outb(Port.SystemControlB, PORT_B_GATE2);
    t.at(501);
    assert.equal(t.latchedCount(2), 899);
    t.at(1399);
    assert.equal(t.inb(Port.SystemControlB) & PORT_B_OUT2, 0);
    t.at(1400);
    assert.equal(t.inb(Port.SystemControlB) & PORT_B_OUT2, PORT_B_OUT2, 'terminal count 1000 counting pulses after the load');
  });

  test('mode 0: a count written with GATE low is loaded at once and runs N pulses after GATE rises', () => {
    const t = makeTestPit();
    t.program(2, 0, 50);
    t.at(100);
    assert.equal(t.latchedCount(2), 50);
    assert.equal(t.status(2) & STATUS_NULL_COUNT, 0, 'loaded although GATE is low');
    t.outb(Port.SystemControlB, PORT_B_GATE2);
    t.at(149);
    assert.equal(t.output(2), false);
    t.at(150);
    assert.equal(t.output(2), true);
  });

  test('mode 2: GATE low stops counting and forces OUT high; a rising edge reloads the count', () => {
    const t = makeTestPit();
    t.outb(Port.SystemControlB, PORT_B_GATE2);
    t.program(2, 2, 10);
    t.at(10);
    assert.equal(t.output(2), false, 'the count-1 pulse');
    t.outb(Port.SystemControlB, 0);
    assert.equal(t.output(2), true, 'OUT high at once');
    t.at(30);
    assert.equal(t.latchedCount(2), 1, 'held');
    t.outb(Port.SystemControlB, PORT_B_GATE2);
    t.at(31);
    assert.equal(t.latchedCount(2), 10, 'reloaded on the pulse after the trigger');
    t.at(40);
    assert.equal(t.output(2), false);
  });
});

describe('port 0x61', () => {
  test("Linux's pit_calibrate_tsc: GATE high, channel 2 in mode 0, poll bit 5 until the terminal count", () => {
    const t = makeTestPit();
    const latch = Math.floor(PIT_INPUT_HZ / 100); // CAL_LATCH: 10 ms
    t.outb(Port.SystemControlB, (t.inb(Port.SystemControlB) & ~PORT_B_SPEAKER) | PORT_B_GATE2);
    t.outb(CONTROL, 0xb0);
    t.outb(CHANNEL_2, latch & 0xff);
    t.outb(CHANNEL_2, latch >> 8);
    const pollEvery = 37;
    let polls = 0;
    let tick = 0;
    while ((t.inb(Port.SystemControlB) & PORT_B_OUT2) === 0) {
      polls++;
      tick += pollEvery;
      t.at(tick);
    }
    assert.ok(tick >= latch + 1 && tick < latch + 1 + pollEvery, `bit 5 rose at the first poll after pulse ${latch + 1}, got ${tick}`);
    assert.equal(polls, Math.ceil((latch + 1) / pollEvery));
    assert.equal(t.pulses(), 0, "channel 2 never raises IRQ 0");
  });

  test('bits 0-1 read back; bit 4 toggles every 18 pulses (a DRAM refresh period); bits 6-7 read 0', () => {
    const t = makeTestPit();
    t.outb(Port.SystemControlB, PORT_B_GATE2 | PORT_B_SPEAKER | 0x0c);
    assert.equal(t.inb(Port.SystemControlB) & 0xcf, PORT_B_GATE2 | PORT_B_SPEAKER, 'bits 2-3 read 0 (no NMI source)');
    const refresh = (tick: number): number => {
      t.at(tick);
      return t.inb(Port.SystemControlB) & PORT_B_REFRESH;
    };
    assert.deepEqual([0, 17, 18, 35, 36].map(refresh), [0, 0, PORT_B_REFRESH, PORT_B_REFRESH, 0]);
  });

  test('writing the read-only bits changes nothing; bits 6-7 are counted, bits 4-5 (read-modify-write) are not', () => {
    const t = makeTestPit();
    t.program(2, 0, 1000);
    t.outb(Port.SystemControlB, PORT_B_OUT2 | PORT_B_REFRESH);
    assert.equal(t.pit.systemControlPort.counters().readOnlyBitWrites, 0);
    assert.equal(t.inb(Port.SystemControlB) & PORT_B_OUT2, 0, 'bit 5 is still OUT2 (low in mode 0)');
    t.outb(Port.SystemControlB, 0xc0);
    assert.equal(t.pit.systemControlPort.counters().readOnlyBitWrites, 1);
    assert.equal(t.inb(Port.SystemControlB) & 0xc0, 0);
  });
});

describe('reading: latch, access modes, read-back', () => {
  test('the counter latch command freezes the count until both bytes are read; a second latch is ignored', () => {
    const t = makeTestPit();
    t.program(0, 2, 1000);
    t.at(101);
    t.outb(CONTROL, 0x00);
    t.at(201);
    t.outb(CONTROL, 0x00);
    assert.equal(t.inb(CHANNEL_0), 900 & 0xff);
    t.at(301);
    assert.equal(t.inb(CHANNEL_0), 900 >> 8, 'the first latch still holds');
    assert.equal(t.inb(CHANNEL_0) | (t.inb(CHANNEL_0) << 8), 700, 'released: live reads again');
  });

  test('LSB-only and MSB-only access modes read and write one byte', () => {
    const t = makeTestPit();
    t.outb(CONTROL, controlWord(0, 2, { access: 1 }));
    t.outb(CHANNEL_0, 200);
    t.at(1);
    assert.equal(t.inb(CHANNEL_0), 200);
    assert.equal(t.inb(CHANNEL_0), 200, 'every read is the low byte');
    t.outb(CONTROL, controlWord(0, 2, { access: 2 }));
    t.outb(CHANNEL_0, 0x12);
    t.at(2);
    assert.equal(t.inb(CHANNEL_0), 0x12, 'count 0x1200, read as its high byte');
    t.at(2 + 0x100);
    assert.equal(t.inb(CHANNEL_0), 0x11);
  });

  test('reads and writes of a two-byte count may be interleaved (datasheet): separate byte pointers', () => {
    const t = makeTestPit();
    t.program(0, 2, 0x1234);
    t.at(1);
    assert.equal(t.inb(CHANNEL_0), 0x34);
    t.outb(CHANNEL_0, 0x78);
    assert.equal(t.inb(CHANNEL_0), 0x12);
    t.outb(CHANNEL_0, 0x56);
    t.at(0x1234 + 1);
    assert.equal(t.latchedCount(0), 0x5678, 'the new count took over at the period end');
  });

  test('read-back latches several channels at once; status comes first, then the count; repeats are ignored', () => {
    const t = makeTestPit();
    t.program(0, 2, 1000);
    t.program(2, 0, 500);
    t.at(101);
    t.outb(CONTROL, readBack(0b101, { count: true, status: true }));
    t.at(301);
    t.outb(CONTROL, readBack(0b101, { count: true, status: true }));
    assert.equal(t.inb(CHANNEL_0), STATUS_OUTPUT | 0x34, 'OUT high, count loaded, RW=3 mode 2 binary');
    assert.equal(t.inb(CHANNEL_0) | (t.inb(CHANNEL_0) << 8), 900, 'the count of the first command');
    assert.equal(t.inb(CHANNEL_2), 0x30, 'OUT low in mode 0, loaded although GATE is low');
    assert.equal(t.inb(CHANNEL_2) | (t.inb(CHANNEL_2) << 8), 500, 'GATE low: not counting');
  });

  test('NULL COUNT is set by a control word and by a count until the pulse that loads it', () => {
    const t = makeTestPit();
    t.outb(CONTROL, controlWord(0, 2));
    assert.equal(t.status(0), STATUS_OUTPUT | STATUS_NULL_COUNT | 0x34);
    t.outb(CHANNEL_0, 10);
    t.outb(CHANNEL_0, 0);
    assert.equal(t.status(0) & STATUS_NULL_COUNT, STATUS_NULL_COUNT);
    t.at(1);
    assert.equal(t.status(0) & STATUS_NULL_COUNT, 0);
  });

  test('a control word releases a latched count and status', () => {
    const t = makeTestPit();
    t.program(0, 2, 1000);
    t.at(101);
    t.outb(CONTROL, readBack(0b1, { count: true, status: true }));
    t.program(0, 2, 300);
    t.at(102);
    assert.equal(t.inb(CHANNEL_0) | (t.inb(CHANNEL_0) << 8), 300, 'a live read of the new count');
  });
});

describe('BCD', () => {
  test('a BCD count runs its decimal value; reads are four BCD digits', () => {
    const t = makeTestPit();
    t.program(0, 2, 0x1234, { bcd: true });
    t.at(1);
    assert.equal(t.latchedCount(0), 0x1234);
    t.at(35);
    assert.equal(t.latchedCount(0), 0x1200);
    assert.equal(t.pit.nextEventNs(), tickTimeNs(1 + 1234));
  });

  test('BCD 0 is 10^4 and wraps to 9999', () => {
    const t = makeTestPit();
    t.program(0, 0, 0, { bcd: true });
    t.at(2);
    assert.equal(t.latchedCount(0), 0x9999);
    assert.equal(t.pit.nextEventNs(), tickTimeNs(10_001));
    t.at(10_002);
    assert.equal(t.latchedCount(0), 0x9999, 'wrapped in decimal');
  });

  test('a digit above 9 is counted as a mistake and runs at its face value', () => {
    const t = makeTestPit();
    t.program(0, 0, 0x00a5, { bcd: true });
    assert.equal(t.pit.counters().invalidBcdCounts, 1);
    assert.equal(t.pit.nextEventNs(), tickTimeNs(1 + 105));
  });
});

describe('IRQ 0 edges from writes', () => {
  test('a control word that sets OUT high raises IRQ 0 at once; one that leaves it high does not', () => {
    const t = makeTestPit();
    t.program(0, 0, 1000);
    t.at(10);
    t.outb(CONTROL, controlWord(0, 2));
    assert.equal(t.pulses(), 1, 'OUT rose from mode 0 low to mode 2 high');
    t.outb(CONTROL, controlWord(0, 3));
    assert.equal(t.pulses(), 1);
  });

  test('the schedule listener hears each write that moves the next event, and only those', () => {
    const t = makeTestPit();
    let changes = 0;
    t.pit.setScheduleListener(() => changes++);
    t.program(0, 2, 100);
    assert.equal(changes, 1, 'the count load made an event due');
    t.program(2, 2, 50);
    t.outb(Port.SystemControlB, PORT_B_GATE2);
    assert.equal(changes, 1, 'channel 2 is not on IRQ 0');
    t.outb(CONTROL, controlWord(0, 0));
    assert.equal(changes, 2, 'a control word stops channel 0');
    assertIrqChipError(() => {
      t.pit.setScheduleListener(() => undefined);
    }, ErrorCode.EBUSY);
    t.pit.setScheduleListener(undefined);
    t.pit.setScheduleListener(() => undefined);
  });
});

describe("the guest's mistakes: hardware behaviour and a counter, never an exception", () => {
  test('modes 6 and 7 are modes 2 and 3; the status repeats the bits as written', () => {
    const t = makeTestPit();
    t.outb(CONTROL, 0x3c);
    t.outb(CHANNEL_0, 10);
    t.outb(CHANNEL_0, 0);
    assert.equal(t.status(0) & 0x3f, 0x3c);
    t.at(11);
    t.pit.advance();
    assert.equal(t.pulses(), 1, 'a rate generator');
    t.outb(CONTROL, 0x3e);
    t.outb(CHANNEL_0, 10);
    t.outb(CHANNEL_0, 0);
    t.at(17);
    assert.equal(t.output(0), false, 'a square wave in its low half');
    assert.equal(t.pit.counters().modeAliases, 2);
  });

  test('a count of 1 in mode 2 leaves OUT low and in mode 3 high: no interrupts at all', () => {
    const t = makeTestPit();
    t.program(0, 2, 1);
    t.at(1000);
    assert.equal(t.output(0), false);
    assert.equal(t.pit.nextEventNs(), undefined);
    t.program(0, 3, 1);
    const pulsesAfterControlWord = t.pulses();
    t.at(2000);
    assert.equal(t.output(0), true);
    assert.equal(t.pulses(), pulsesAfterControlWord);
    assert.equal(t.pit.counters().illegalCounts, 2);
  });

  test('the control port reads as an undriven bus; an unprogrammed channel too; reserved read-back bit', () => {
    const t = makeTestPit();
    assert.equal(t.inb(CONTROL), 0xff);
    assert.equal(t.inb(Port.Pit + 1), 0xff);
    t.outb(Port.Pit + 1, 0x12);
    t.outb(CONTROL, readBack(0b1, { count: true, status: true }) | 1);
    assert.deepEqual(
      { ...t.pit.counters() },
      {
        ticks: 0,
        coalescedTicks: 0,
        illegalCounts: 0,
        invalidBcdCounts: 0,
        modeAliases: 0,
        unprogrammedAccesses: 2,
        controlPortReads: 1,
        reservedReadBackBits: 1,
        accessesPastEnd: 0,
      },
    );
  });

  test('word and dword accesses are byte cycles to consecutive ports; lanes past the PIT or port 0x61 read all ones', () => {
    const t = makeTestPit();
    t.program(0, 2, 0x0203);
    t.outb(CONTROL, controlWord(1, 2, { access: 1 }));
    t.outb(Port.Pit + 1, 0x44);
    t.at(1);
    assert.equal(t.pit.read(0, 2), 0x4403, 'channel 0 low byte, then channel 1');
    assert.equal(t.pit.read(3, 1), 0xff);
    assert.equal(t.pit.read(2, 2) >>> 8, 0xff, 'the control port lane');
    assert.equal(t.pit.read(2, 4) >>> 16, 0xffff, 'ports 0x44-0x45 are not the PIT');
    assert.equal(t.pit.systemControlPort.read(0, 2) >>> 8, 0xff);
    assert.equal(t.pit.counters().accessesPastEnd, 1, 'the dword at 0x42 ran past 0x43');
    assert.equal(t.pit.systemControlPort.counters().accessesPastEnd, 1);
  });
});

describe("the caller's mistakes", () => {
  test('a PIT without a clock or a line is EINVAL', () => {
    const line = { setLevel: () => undefined };
    assertIrqChipError(() => new Pit8254({ clock: {} as unknown as Clock, irqLine: line }), ErrorCode.EINVAL);
    assertIrqChipError(() => new Pit8254({ clock: { nowNs: () => 0 }, irqLine: {} as unknown as typeof line }), ErrorCode.EINVAL);
  });
});
