import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runControllerDemo } from '../src/demo/controller-demo.ts';
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

test('controller demo: every interrupt each source raises is handled by a CPU, on every path', () => {
  const summary = runControllerDemo(1_000);
  assert.deepEqual(
    summary.map((row) => row.source),
    ['level device', 'LAPIC timer', 'MSI', 'ISA IRQ 3'],
  );
  for (const row of summary) {
    assert.ok(row.raised > 0, `${row.source} raised interrupts`);
    assert.equal(row.handled, row.raised, `${row.source}: none lost, none duplicated`);
  }
  // 1 000 steps of 10 µs: the 250 µs periodic timer fires 40 times, the MSI source every 5th step.
  assert.equal(summary[1]?.raised, 40);
  assert.equal(summary[2]?.raised, 200);
});
