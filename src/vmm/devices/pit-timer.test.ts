/**
 * `startPitTimer` on a virtual clock with node:test's mocked setTimeout: it advances the PIT at
 * each event, re-arms when a guest write moves the schedule, and stops.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, mock, test } from 'node:test';
import { ErrorCode } from '../../base/errors.ts';
import { assertIrqChipError } from '../../testing/irq-chip-error.ts';
import { Port } from '../machine-layout.ts';
import { controlWord, makeTestPit, type TestPit } from './pit-test-support.ts';
import { startPitTimer } from './pit-timer.ts';

const NS_PER_MS = 1_000_000;

beforeEach(() => {
  mock.timers.enable({ apis: ['setTimeout'] });
});

afterEach(() => {
  mock.timers.reset();
});

/** Lets `ms` milliseconds pass on the PIT's clock and on the mocked timers together, 1 ms at a time. */
function pass(t: TestPit, ms: number): void {
  for (let step = 0; step < ms; step++) {
    t.clock.advance(NS_PER_MS);
    mock.timers.tick(1);
  }
}

test('the timer delivers each period of a 2 ms rate generator and nothing once stopped', () => {
  const t = makeTestPit();
  t.program(0, 2, 2386);
  const timer = startPitTimer(t.pit, t.clock);
  pass(t, 20);
  // Edges at pulses 1 + 2386j: ten of them by 20 ms (pulse 23863).
  assert.equal(t.pulses(), 10);
  assert.equal(t.pit.counters().coalescedTicks, 0);
  timer.stop();
  pass(t, 20);
  assert.equal(t.pulses(), 10);
});

test('a guest write re-arms the timer: a shorter period takes over at once; a stopped channel arms nothing', () => {
  const t = makeTestPit();
  const timer = startPitTimer(t.pit, t.clock);
  pass(t, 5);
  assert.equal(t.pulses(), 0, 'nothing programmed, nothing due');
  t.program(0, 2, 11932);
  pass(t, 10);
  assert.equal(t.pulses(), 0, 'the 10 ms period has not ended');
  t.program(0, 2, 1193);
  pass(t, 10);
  assert.equal(t.pulses(), 10, 'a 1193-pulse period from the write at 15 ms: ten edges by 25 ms');
  t.outb(Port.Pit + 3, controlWord(0, 0));
  const before = t.pulses();
  pass(t, 100);
  assert.equal(t.pulses(), before, 'mode 0 without a count: nothing due');
  timer.stop();
});

test('one timer per PIT: a second is EBUSY; after stop another may start', () => {
  const t = makeTestPit();
  const first = startPitTimer(t.pit, t.clock);
  assertIrqChipError(() => startPitTimer(t.pit, t.clock), ErrorCode.EBUSY);
  first.stop();
  first.stop();
  startPitTimer(t.pit, t.clock).stop();
});
