import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { rejectsWith } from '../../testing/irq-chip-error.ts';
import { MAX_MEMORY_MIB, MIN_MEMORY_MIB } from '../machine-layout.ts';
import { E820Type, LOWER_MEMORY_KIB, pcMemoryMap, upperMemoryKib } from './pc-memory-map.ts';

const MIB = 1 << 20;
const { Ram, Reserved } = E820Type;

describe("the PC memory map QEMU's -kernel gives (SeaBIOS's E820 under TCG)", () => {
  test('for 128 MiB: the seven entries a QEMU 7.1+ guest sees, mem_lower 639 KiB and mem_upper 129920 KiB', () => {
    assert.deepEqual(pcMemoryMap(128 * MIB), [
      { base: 0, length: 0x9fc00, type: Ram },
      { base: 0x9fc00, length: 0x400, type: Reserved },
      { base: 0xf0000, length: 0x10000, type: Reserved },
      { base: 0x100000, length: 0x7ee0000, type: Ram },
      { base: 0x7fe0000, length: 0x20000, type: Reserved },
      { base: 0xfffc0000, length: 0x40000, type: Reserved },
      { base: 0xfd_0000_0000, length: 0x3_0000_0000, type: Reserved },
    ]);
    assert.equal(LOWER_MEMORY_KIB, 639);
    assert.equal(upperMemoryKib(pcMemoryMap(128 * MIB)), 129920);
  });

  test('for every RAM size: entries in order, disjoint, and RAM up to the top 128 KiB', () => {
    fc.assert(
      fc.property(fc.integer({ min: MIN_MEMORY_MIB, max: MAX_MEMORY_MIB }), (mib) => {
        const map = pcMemoryMap(mib * MIB);
        map.slice(1).forEach((entry, index) => {
          const previous = map[index];
          assert.ok(previous !== undefined && previous.base + previous.length <= entry.base);
        });
        assert.equal(upperMemoryKib(map), (mib * MIB - MIB - 128 * 1024) / 1024);
      }),
    );
  });

  test("our 64-bit guests' map reserves the VMM's low area and keeps the rest", () => {
    const map = pcMemoryMap(128 * MIB, 0x8000);
    assert.deepEqual(map.slice(0, 2), [
      { base: 0, length: 0x8000, type: Reserved },
      { base: 0x8000, length: 0x9fc00 - 0x8000, type: Ram },
    ]);
    assert.deepEqual(map.slice(2), pcMemoryMap(128 * MIB).slice(1));
  });

  test("mem_upper follows the option ROM: contiguous RAM from 1 MiB, found in any order, stopping at a gap or above 4 GiB", () => {
    const entries = [
      { base: 0x100000, length: 0x100000, type: Ram },
      { base: 0x200000, length: 0x100000, type: Ram },
      { base: 0x400000, length: 0x100000, type: Ram },
      { base: 0x300000, length: 0x1000, type: Reserved },
    ];
    fc.assert(
      fc.property(fc.shuffledSubarray(entries, { minLength: entries.length }), (shuffled) => {
        assert.equal(upperMemoryKib(shuffled), 2048);
      }),
    );
    assert.equal(upperMemoryKib([{ base: 0, length: 0x9fc00, type: Ram }]), 0);
    assert.equal(upperMemoryKib([{ base: 0x1_0000_0000, length: MIB, type: Ram }]), 0);
  });

  test('RAM outside what the machine allows, or not whole pages, and a low area reaching the EBDA are refused with EINVAL', () => {
    for (const bytes of [MIB, (MAX_MEMORY_MIB + 1) * MIB, 128 * MIB + 1, Number.NaN]) assert.throws(() => pcMemoryMap(bytes), rejectsWith('EINVAL'));
    assert.throws(() => pcMemoryMap(128 * MIB, 0x9fc00), rejectsWith('EINVAL'));
    assert.throws(() => pcMemoryMap(128 * MIB, -1), rejectsWith('EINVAL'));
  });
});
