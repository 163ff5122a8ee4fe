import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IrqLevelEvent } from '../event/irq-event.ts';
import { startTypeScriptWorker } from '../node/worker.ts';
import { makeMachine, programIoapicPin } from './chip-test-support.ts';
import type { ChipWorkerData, ChipWorkerReply } from './chip-worker.fixture.ts';

const FIXTURE = new URL('./chip-worker.fixture.ts', import.meta.url);
const SOURCE = { deviceId: 7, queueId: 0, deviceName: 'level-device' };

test('a vCPU in a worker takes level interrupts; its EOIs resample events registered after the view was made', async () => {
  const machine = makeMachine();
  const { chip } = machine;
  programIoapicPin(machine, 10, { vector: 0x3a, level: true, destination: 1 });
  chip.setMpState(1, 'runnable');
  const rounds = 300;
  const view = chip.createView();
  const worker = startTypeScriptWorker(FIXTURE, { workerData: { chip: view, vcpuId: 1, expected: rounds } satisfies ChipWorkerData, transferList: [view.registry] });
  const reply = new Promise<ChipWorkerReply>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  // Registered after the view exists: the worker learns of it when it next looks.
  const level = new IrqLevelEvent();
  const index = chip.registerLevelIrqEvent(10, level, SOURCE);
  for (let round = 0; round < rounds; round++) {
    level.trigger();
    chip.serviceIrqEvent(index);
    // The worker's EOI (its own thread) signals the resample event.
    assert.equal(await level.getResample().waitAsync(10_000), 'signaled', `round ${round}: resample arrived`);
    assert.equal(level.clearResample(), true);
  }
  const result = await reply;
  await worker.terminate();
  assert.equal(result.taken, rounds);
  assert.deepEqual(result.vectors, { [0x3a]: rounds });
  assert.equal(chip.counters().resamplesSignalled, rounds);
});

test('a kick with no waiter makes the next wait return interrupted, once', () => {
  const { chip, vcpus } = makeMachine();
  const vcpu = vcpus[0];
  assert.ok(vcpu);
  chip.halted(0);
  chip.kickHaltedVcpus();
  // waitUntilRunnable blocks only on workers; its async twin answers here.
  return chip.waitUntilRunnableAsync(vcpu).then(async (first) => {
    assert.equal(first, 'interrupted');
    chip.setMpState(0, 'runnable');
    assert.equal(await chip.waitUntilRunnableAsync(vcpu), 'runnable');
  });
});
