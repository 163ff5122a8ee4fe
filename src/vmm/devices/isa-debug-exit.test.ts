import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IrqChipError } from '../../base/errors.ts';
import { ISA_DEBUG_EXIT_COUNTER_NAMES, IsaDebugExit } from './isa-debug-exit.ts';

function debugExit(): { readonly device: IsaDebugExit; readonly values: number[] } {
  const values: number[] = [];
  const device = new IsaDebugExit({
    onExit: (value) => {
      values.push(value);
    },
  });
  return { device, values };
}

describe('IsaDebugExit', () => {
  test('a write of any size ends the machine with the value written: outb, outw, outl', () => {
    for (const [size, value] of [
      [1, 0x00],
      [1, 0x7f],
      [2, 0x1234],
      [4, 0xdeadbeef],
    ] as const) {
      const { device, values } = debugExit();
      device.write(0, size, value);
      assert.deepEqual(values, [value], `${size}-byte write`);
    }
  });

  test('any of its four ports; a misaligned access writes only its first piece, as QEMU dispatches it', () => {
    const atPort2 = debugExit();
    atPort2.device.write(2, 4, 0x11223344);
    assert.deepEqual(atPort2.values, [0x3344], 'a dword at 0xf6 is cut at the end of the region: its low word');
    assert.equal(atPort2.device.counters().accessesPastEnd, 1);
    const atPort1 = debugExit();
    atPort1.device.write(1, 2, 0xabcd);
    assert.deepEqual(atPort1.values, [0xcd], 'a word at 0xf5: one byte, then the machine is gone');
    assert.equal(atPort1.device.counters().writesAfterExit, 0, 'pieces of the first write are not later writes');
  });

  test('the first write decides; later writes (other vCPUs before they stop) are counted and change nothing', () => {
    const { device, values } = debugExit();
    device.write(0, 4, 3);
    device.write(0, 1, 5);
    device.write(3, 1, 7);
    assert.deepEqual(values, [3]);
    assert.deepEqual(device.counters(), { writesAfterExit: 2, accessesPastEnd: 0 });
    assert.deepEqual(Object.keys(device.counters()), [...ISA_DEBUG_EXIT_COUNTER_NAMES]);
  });

  test('reads return 0 (QEMU debug_exit_read) and end nothing', () => {
    const { device, values } = debugExit();
    assert.deepEqual([device.read(0, 1), device.read(0, 4), device.read(3, 1)], [0, 0, 0]);
    assert.equal(device.read(2, 4), 0xffff0000, 'lanes past port 0xf7 are undriven');
    assert.deepEqual(values, []);
  });

  test('caller mistakes throw EINVAL: no onExit, an offset outside its ports', () => {
    assert.throws(() => new IsaDebugExit({ onExit: undefined as unknown as () => void }), IrqChipError);
    const { device, values } = debugExit();
    assert.throws(() => {
      device.write(4, 1, 0);
    }, IrqChipError);
    assert.deepEqual(values, []);
  });
});
