/**
 * `ResampledLevelLine` on the userspace chip: one trigger per resample while the device wants
 * service, none when it does not, and a clean close.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TEST_SOURCE, makeMachine, programIoapicPin, type TestMachine } from '../../../chip/chip-test-support.ts';
import type { SimInterruptHandler } from '../../../chip/sim-vcpu.ts';
import { rejectsWith } from '../../../testing/irq-chip-error.ts';
import { ResampledLevelLine } from './resampled-level-line.ts';
import { deliver, settle } from './pci-test-support.ts';

const GSI = 11;
const VECTOR = 0x41;

function lineMachine(handler?: SimInterruptHandler): TestMachine {
  const machine = makeMachine({}, handler === undefined ? {} : { handler });
  programIoapicPin(machine, GSI, { vector: VECTOR, level: true });
  return machine;
}

describe('ResampledLevelLine', () => {
  test('updates while a trigger is in force add nothing; each resample re-triggers while wanted, and not after', async () => {
    let work = 3;
    // The guest's handler does one unit of the device's work, then EOIs.
    const machine = lineMachine((_vector, guest) => {
      work--;
      guest.eoiLocalApic();
    });
    const line = new ResampledLevelLine({ chip: machine.chip, gsi: GSI, source: TEST_SOURCE, wanted: () => work > 0 });
    try {
      line.update();
      line.update();
      assert.deepEqual(line.counters(), { triggers: 1, resamples: 0 });
      const taken = await settle(machine, () => work === 0 && line.counters().resamples === line.counters().triggers);
      assert.deepEqual(taken, [VECTOR, VECTOR, VECTOR]);
      assert.deepEqual(line.counters(), { triggers: 3, resamples: 3 });
    } finally {
      await line.close();
    }
  });

  test('a line that is not wanted never triggers', async () => {
    const machine = lineMachine();
    const line = new ResampledLevelLine({ chip: machine.chip, gsi: GSI, source: TEST_SOURCE, wanted: () => false });
    line.update();
    assert.deepEqual(deliver(machine), []);
    assert.deepEqual(line.counters(), { triggers: 0, resamples: 0 });
    await line.close();
  });

  test('close unregisters the event from the chip and ends the resample loop; later updates do nothing', async () => {
    const machine = lineMachine();
    const line = new ResampledLevelLine({ chip: machine.chip, gsi: GSI, source: TEST_SOURCE, wanted: () => true });
    assert.equal(machine.chip.irqEventTokens().length, 1);
    await line.close();
    assert.equal(machine.chip.irqEventTokens().length, 0);
    line.update();
    assert.deepEqual(line.counters(), { triggers: 0, resamples: 0 });
    await line.close();
  });

  test('a GSI the chip refuses is the caller\'s mistake, passed on', () => {
    const machine = lineMachine();
    assert.throws(() => new ResampledLevelLine({ chip: machine.chip, gsi: -1, source: TEST_SOURCE, wanted: () => true }), rejectsWith('EINVAL'));
    assert.equal(machine.chip.irqEventTokens().length, 0);
  });
});
