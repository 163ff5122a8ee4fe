/**
 * Properties of the 8254 PIT over many periods and random owners: in modes 2 and 3 every rising
 * edge of OUT0 is either one IRQ 0 pulse or counted as coalesced, never lost nor doubled, however
 * late the owner runs; the line is a clean pulse train; the count and OUT agree as the datasheet
 * ties them; and no guest port traffic throws.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Port } from '../machine-layout.ts';
import { ticksAt, tickTimeNs } from './pit-channel.ts';
import { makeTestPit, type TestPit } from './pit-test-support.ts';

/** Counts a guest uses (HZ 100 / 250 / 1000, the BIOS's 18.2 Hz) and random ones, small ones often. */
const periodicCount = fc.oneof(fc.constantFrom(11932, 4773, 1193, 0), fc.integer({ min: 2, max: 64 }), fc.integer({ min: 2, max: 0xffff }));
const periodicMode = fc.constantFrom(2, 3);

/** The count register's value as pulses (0 is 2^16). */
function lengthOf(count: number): number {
  return count === 0 ? 0x10000 : count;
}

/** Rising edges of OUT0 up to `tick` for a periodic count loaded at pulse 1: at 1 + jN. */
function edgesBy(tick: number, n: number): number {
  return tick < 1 ? 0 : Math.floor((tick - 1) / n);
}

function assertPulseTrain(t: TestPit): void {
  t.levels.forEach((level, index) => {
    assert.equal(level, index % 2 === 0, `level change ${index} of IRQ 0 is ${level ? 'a raise' : 'a lower'}`);
  });
}

test('modes 2 and 3: every edge of OUT0 is one IRQ 0 pulse or counted as coalesced, whatever the owner does', () => {
  fc.assert(
    fc.property(periodicMode, periodicCount, fc.array(fc.integer({ min: 0, max: 300_000 }), { minLength: 1, maxLength: 60 }), (mode, count, delays) => {
      const n = lengthOf(count);
      const t = makeTestPit();
      t.program(0, mode, count);
      let tick = 0;
      for (const delay of delays) {
        tick += delay;
        t.at(tick);
        t.pit.advance();
        const { ticks, coalescedTicks } = t.pit.counters();
        assert.equal(ticks + coalescedTicks, edgesBy(tick, n));
        assert.equal(t.pulses(), ticks);
      }
      assertPulseTrain(t);
    }),
  );
});

test('modes 2 and 3: an owner that advances at each nextEventNs delivers exactly one pulse per period', () => {
  fc.assert(
    fc.property(periodicMode, periodicCount, fc.integer({ min: 1, max: 200 }), fc.integer({ min: 0, max: 100_000 }), (mode, count, periods, lateNs) => {
      const n = lengthOf(count);
      const t = makeTestPit();
      t.program(0, mode, count);
      for (let period = 1; period <= periods; period++) {
        const due = t.pit.nextEventNs();
        assert.equal(due, tickTimeNs(1 + period * n));
        // Late, but by less than a period: still one edge each time.
        t.clock.advance(due + Math.min(lateNs, tickTimeNs(n) - tickTimeNs(1) - 1) - t.clock.nowNs());
        t.pit.advance();
        assert.equal(t.pulses(), period);
      }
      assert.equal(t.pit.counters().coalescedTicks, 0);
      assertPulseTrain(t);
    }),
  );
});

test('mode 2: OUT is low exactly when the count reads 1; mode 3 with an even count reads only even counts', () => {
  fc.assert(
    fc.property(fc.integer({ min: 2, max: 0xffff }), fc.array(fc.integer({ min: 0, max: 200_000 }), { minLength: 1, maxLength: 30 }), (count, delays) => {
      const rate = makeTestPit();
      rate.program(0, 2, count);
      const square = makeTestPit();
      const even = count & ~1 || 2;
      square.program(0, 3, even);
      let tick = 1;
      for (const delay of delays) {
        tick += delay;
        rate.at(tick);
        assert.equal(rate.output(0), rate.latchedCount(0) !== 1);
        square.at(tick);
        const squareCount = square.latchedCount(0) || 0x10000;
        assert.equal(squareCount % 2, 0);
        assert.ok(squareCount >= 2 && squareCount <= even);
      }
    }),
  );
});

test('the input clock: ticksAt is monotonic and tickTimeNs is its least inverse', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 52 }), fc.integer({ min: 0, max: 1e9 }), (ns, delta) => {
      assert.ok(ticksAt(ns + delta) >= ticksAt(ns));
      const tick = ticksAt(ns);
      assert.ok(tickTimeNs(tick) <= ns && ticksAt(tickTimeNs(tick)) === tick);
      assert.equal(ticksAt(tickTimeNs(tick + 1)), tick + 1);
    }),
  );
});

type GuestAccess =
  | { readonly kind: 'out'; readonly port: number; readonly size: number; readonly value: number }
  | { readonly kind: 'in'; readonly port: number; readonly size: number }
  | { readonly kind: 'wait'; readonly ns: number }
  | { readonly kind: 'advance' };

const GUEST_PORTS = [Port.Pit, Port.Pit + 1, Port.Pit + 2, Port.Pit + 3, Port.SystemControlB];
const guestAccess: fc.Arbitrary<GuestAccess> = fc.oneof(
  fc.record({ kind: fc.constant('out' as const), port: fc.constantFrom(...GUEST_PORTS), size: fc.constantFrom(1, 1, 1, 2, 4), value: fc.integer({ min: 0, max: 0xffffffff }) }),
  fc.record({ kind: fc.constant('in' as const), port: fc.constantFrom(...GUEST_PORTS), size: fc.constantFrom(1, 1, 1, 2, 4) }),
  fc.record({ kind: fc.constant('wait' as const), ns: fc.integer({ min: 0, max: 5_000_000 }) }),
  fc.record({ kind: fc.constant('advance' as const) }),
);

test('random guest traffic on ports 0x40-0x43 and 0x61 never throws; IRQ 0 stays a pulse train; events are never in the past after advance', () => {
  fc.assert(
    fc.property(fc.array(guestAccess, { maxLength: 200 }), (accesses) => {
      const t = makeTestPit();
      const device = (port: number): { read(offset: number, size: number): number; write(offset: number, size: number, value: number): void } =>
        port === Port.SystemControlB ? t.pit.systemControlPort : t.pit;
      const offset = (port: number): number => (port === Port.SystemControlB ? 0 : port - Port.Pit);
      for (const access of accesses) {
        switch (access.kind) {
          case 'out':
            device(access.port).write(offset(access.port), access.size, access.value % 2 ** (8 * access.size));
            break;
          case 'in': {
            const value = device(access.port).read(offset(access.port), access.size);
            assert.ok(value >= 0 && value < 2 ** (8 * access.size));
            break;
          }
          case 'wait':
            t.clock.advance(access.ns);
            break;
          case 'advance': {
            t.pit.advance();
            const due = t.pit.nextEventNs();
            assert.ok(due === undefined || due > t.clock.nowNs(), 'what was due has been delivered');
          }
        }
      }
      assertPulseTrain(t);
      assert.equal(t.pulses(), t.pit.counters().ticks);
    }),
  );
});
