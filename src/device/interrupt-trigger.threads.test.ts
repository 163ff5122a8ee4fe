import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startTypeScriptWorker } from '../node/worker.ts';
import { makeDeviceMachine, msiTo, runGuests } from './device-test-support.ts';
import type { TriggerRequest, TriggerWorkerData } from './trigger-worker.fixture.ts';

const FIXTURE = new URL('./trigger-worker.fixture.ts', import.meta.url);

test('a device on another thread raises interrupts through a trigger view: delivered while live, held while masked, once at unmask', async () => {
  const machine = makeDeviceMachine();
  const group = machine.manager.createGroup('msi', 0, 2);
  group.enable([msiTo(0, 0x61), msiTo(1, 0x62)]);
  const chip = machine.chip.createView();
  const worker = startTypeScriptWorker(FIXTURE, {
    workerData: { chip, trigger: group.triggerDescriptor() } satisfies TriggerWorkerData,
    transferList: [chip.registry],
  });
  const raise = (request: TriggerRequest) =>
    new Promise<void>((resolve, reject) => {
      worker.once('message', () => {
        resolve();
      });
      worker.once('error', reject);
      worker.postMessage(request);
    });
  try {
    await raise({ index: 1, count: 1 });
    assert.deepEqual(runGuests(machine), [[], [0x62]], 'live: delivered from the device thread at once');
    group.mask(0);
    await raise({ index: 0, count: 50 });
    assert.equal(group.getPendingState(0), true, 'masked: held pending in the shared state');
    assert.deepEqual(runGuests(machine), [[], []]);
    group.unmask(0);
    assert.deepEqual(runGuests(machine), [[0x61], []], 'fifty triggers while masked: one interrupt at unmask');
  } finally {
    await worker.terminate();
  }
});
