import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HostClock, VirtualClock } from '../src/index.ts';

test('VirtualClock moves only when advanced, never backwards, and is shared through its descriptor', () => {
  const clock = new VirtualClock(100);
  assert.equal(clock.nowNs(), 100);
  clock.advance(50);
  clock.advance(-10);
  assert.equal(clock.nowNs(), 150);
  const view = VirtualClock.fromDescriptor(structuredClone(clock.descriptor()));
  view.advance(1);
  assert.equal(clock.nowNs(), 151);
});

test('HostClock is monotonic', () => {
  const clock = new HostClock();
  const first = clock.nowNs();
  assert.ok(clock.nowNs() >= first);
});
