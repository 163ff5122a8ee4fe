import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createProbeMachine, withProbe, waitForVector, vectorCount } from './probe-machine.ts';
import { msiIrqRoute } from '../routing/irq-route.ts';
for (const mode of ['kernel', 'userspace'] as const) {
  test(`${mode}: serviceIrq on an MSI route`, async () => {
    const machine = createProbeMachine(mode);
    machine.chip.routeIrq(msiIrqRoute(30, 0xfee00000n, 0x41));
    await withProbe(machine, {}, async () => {
      for (let i = 1; i <= 20; i++) {
        machine.chip.serviceIrq(30, true);
        await waitForVector(machine, 0x41, i);
      }
      assert.equal(vectorCount(machine, 0x41), 20);
    });
  });
}
