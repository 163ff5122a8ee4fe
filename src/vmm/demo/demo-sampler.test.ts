import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { VirtualClock } from '../../base/clock.ts';
import { DemoRateSampler, handlerRuns } from './demo-sampler.ts';
import { demoStatus as status } from './demo-test-support.ts';

const MS = 1e6;

describe('handlerRuns', () => {
  test('counts every handler run of a source: late timer ticks and level runs that found no work included', () => {
    assert.deepEqual(handlerRuns(status({ timerTicks: 10, timerLateTicks: 1, ipisSent: 9, ipisHandled: 8, levelHandled: 7, levelIdle: 2, msixRaised: 6, msixHandled: 5 })), {
      timer: 11,
      ipi: 8,
      level: 9,
      msix: 5,
    });
  });
});

describe('DemoRateSampler', () => {
  test('each sample gives the runs since the previous one per second of the clock, and the time since the start', () => {
    const clock = new VirtualClock(5_000 * MS);
    let current = status();
    const sampler = new DemoRateSampler(() => current, clock);
    clock.advance(250 * MS);
    current = status({ timerTicks: 250, ipisHandled: 200, levelHandled: 250, msixHandled: 125 });
    const first = sampler.sample();
    assert.deepEqual(first.rates, { timer: 1000, ipi: 800, level: 1000, msix: 500 });
    assert.equal(first.elapsedSeconds, 0.25);
    assert.equal(first.status, current);
    clock.advance(500 * MS);
    current = status({ timerTicks: 750, ipisHandled: 200, levelHandled: 500, levelIdle: 50, msixHandled: 375 });
    const second = sampler.sample();
    assert.deepEqual(second.rates, { timer: 1000, ipi: 0, level: 600, msix: 500 });
    assert.equal(second.elapsedSeconds, 0.75);
    assert.equal(sampler.samples, 2);
  });

  test('remembers the highest rate of each source', () => {
    const clock = new VirtualClock();
    let current = status();
    const sampler = new DemoRateSampler(() => current, clock);
    clock.advance(1000 * MS);
    current = status({ timerTicks: 100, ipisHandled: 300 });
    sampler.sample();
    clock.advance(1000 * MS);
    current = status({ timerTicks: 300, ipisHandled: 350, msixHandled: 1 });
    sampler.sample();
    assert.deepEqual(sampler.peakRates(), { timer: 200, ipi: 300, level: 0, msix: 1 });
  });

  test('a sample taken at the same instant as the previous one has rates of 0, not a division by zero', () => {
    const clock = new VirtualClock();
    let current = status();
    const sampler = new DemoRateSampler(() => current, clock);
    current = status({ timerTicks: 5 });
    assert.deepEqual(sampler.sample().rates, { timer: 0, ipi: 0, level: 0, msix: 0 });
  });
});
