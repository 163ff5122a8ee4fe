import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { IrqChipError } from '../../base/errors.ts';
import { allOnes } from '../../base/integers.ts';
import { TESTDEV_IRQ_LINES } from '../machine-layout.ts';
import { PC_TESTDEV_COUNTER_NAMES, PcTestdev } from './pc-testdev.ts';

function testdev(): { readonly device: PcTestdev; readonly calls: (readonly [number, boolean])[] } {
  const calls: (readonly [number, boolean])[] = [];
  const device = new PcTestdev({
    setLine: (line, level) => {
      calls.push([line, level]);
    },
  });
  return { device, calls };
}

describe('PcTestdev: the IRQ-line ports', () => {
  test('a byte written to port 0x2000 + n sets line n: nonzero high, zero low; every write is passed on', () => {
    const { device, calls } = testdev();
    for (let line = 0; line < TESTDEV_IRQ_LINES; line++) {
      device.write(line, 1, 1);
      device.write(line, 1, 0x80);
      device.write(line, 1, 0);
    }
    const expected = Array.from({ length: TESTDEV_IRQ_LINES }, (_, line) => [
      [line, true],
      [line, true],
      [line, false],
    ]).flat();
    assert.deepEqual(calls, expected);
  });

  test('a word or dword write sets consecutive lines, lowest first (QEMU takes single bytes)', () => {
    const { device, calls } = testdev();
    device.write(4, 2, 0x0001);
    device.write(8, 4, 0x01000100);
    assert.deepEqual(calls, [
      [4, true],
      [5, false],
      [8, false],
      [9, true],
      [10, false],
      [11, true],
    ]);
  });

  test('a write reaching past line 23 sets the lines it covers and is counted; reads return 0', () => {
    fc.assert(
      fc.property(fc.nat({ max: TESTDEV_IRQ_LINES - 1 }), fc.constantFrom(1, 2, 4), fc.nat({ max: 0xffffffff }), (line, size, value) => {
        const { device, calls } = testdev();
        device.write(line, size, value);
        const covered = Math.min(size, TESTDEV_IRQ_LINES - line);
        assert.deepEqual(
          calls,
          Array.from({ length: covered }, (_, lane) => [line + lane, ((value >>> (lane * 8)) & 0xff) !== 0]),
        );
        assert.equal(device.counters().accessesPastEnd, line + size > TESTDEV_IRQ_LINES ? 1 : 0);
        // The lines' ports read 0; lanes past them are undriven.
        assert.equal(device.read(line, size), (allOnes(size) & ~allOnes(covered)) >>> 0);
      }),
    );
    assert.deepEqual(PC_TESTDEV_COUNTER_NAMES, ['accessesPastEnd']);
  });

  test('caller mistakes throw EINVAL: no setLine, a port beyond line 23', () => {
    assert.throws(() => new PcTestdev({ setLine: null as unknown as () => void }), IrqChipError);
    const { device, calls } = testdev();
    assert.throws(() => {
      device.write(TESTDEV_IRQ_LINES, 1, 1);
    }, IrqChipError);
    assert.deepEqual(calls, []);
  });
});
