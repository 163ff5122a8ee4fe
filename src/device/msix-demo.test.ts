import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runMsixDemo } from './msix-demo-test-support.ts';

test('MSI-X demo: while the guest masks, unmasks and reprograms, every interrupt the device fired is taken once (or merged into a pending bit)', () => {
  for (const seed of [1, 2, 3]) {
    const report = runMsixDemo({ rounds: 1500, seed });
    assert.equal(report.everyInterruptAccountedFor, true, `seed ${seed}: ${JSON.stringify(report.queues)}`);
    for (const queue of report.queues) {
      assert.equal(queue.fired, queue.deliveredAtOnce + queue.heldPending + queue.coalesced);
      assert.equal(queue.takenByGuest, queue.deliveredAtOnce + queue.heldPending, `seed ${seed} queue ${queue.queue}: held interrupts arrive once each`);
    }
    const total = (field: 'fired' | 'heldPending' | 'coalesced') => report.queues.reduce((sum, queue) => sum + queue[field], 0);
    assert.ok(total('heldPending') > 0 && total('coalesced') > 0, 'the run exercised masking and coalescing');
    assert.ok(report.queues.some((queue) => queue.raisedBy === 'notifier' && queue.heldPending > 0), 'notifier-raised interrupts were held too');
    assert.ok(report.guest.reprograms > 0 && report.guest.functionMaskToggles > 0 && report.guest.pendingBitsSeen > 0);
    assert.equal(report.gsisInUse, 8, 'one GSI per vector in use');
  }
});

test('MSI-X demo: a seed replays the same run', () => {
  assert.deepEqual(runMsixDemo({ rounds: 300, seed: 9 }), runMsixDemo({ rounds: 300, seed: 9 }));
});
