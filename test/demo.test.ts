import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runEventDemo } from '../src/demo/event-demo.ts';

test('event demo: each device signal is received by the controller; level devices get one resample per delivery', async () => {
  const summary = await runEventDemo(300);
  assert.equal(summary.length, 2);
  for (const source of summary) {
    assert.equal(source.signalled, 300, `${source.source} sent every interrupt`);
    assert.equal(source.received, source.signalled, `${source.source}: none lost`);
    assert.ok(source.delivered >= 1 && source.delivered <= source.received);
  }
  const level = summary.find((source) => source.kind === 'level');
  assert.ok(level);
  // A level device waits for the resample before re-asserting, so nothing coalesces.
  assert.equal(level.delivered, 300);
  assert.equal(level.resamples, 300);
});
