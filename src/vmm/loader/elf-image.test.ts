import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { rejectsWith } from '../../testing/irq-chip-error.ts';
import { ElfMachine, elfClassOf, isElf, machineName, parseElf } from './elf-image.ts';
import { buildElf } from './loader-test-support.ts';

const code = [0x90, 0x90, 0xf4];

describe('ELF executables', () => {
  for (const elfClass of [32, 64] as const) {
    test(`${elfClass}-bit: PT_LOAD segments at p_paddr with their file bytes and memory size; other program headers skipped`, () => {
      const image = buildElf({
        elfClass,
        entry: 0x100000,
        segments: [
          { physical: 0x100000, bytes: code },
          { physical: 0x200000, bytes: [1, 2], memoryBytes: 0x1000, executable: false },
          { physical: 0x300000, bytes: [9, 9], type: 4 },
        ],
      });
      const elf = parseElf(image, 'test.elf');
      assert.equal(elf.elfClass, elfClass);
      assert.equal(elf.machine, elfClass === 64 ? ElfMachine.X86_64 : ElfMachine.I386);
      assert.equal(elf.entry, 0x100000);
      assert.deepEqual(
        elf.segments.map((segment) => ({ address: segment.address, bytes: [...segment.bytes], memoryBytes: segment.memoryBytes })),
        [
          { address: 0x100000, bytes: code, memoryBytes: 3 },
          { address: 0x200000, bytes: [1, 2], memoryBytes: 0x1000 },
        ],
      );
    });
  }

  test('an entry in an executable segment linked elsewhere is moved to where that segment loads, as QEMU does', () => {
    const high = 0xc0100000;
    const image = buildElf({ elfClass: 32, entry: high + 2, segments: [{ physical: 0x100000, virtual: high, bytes: code }] });
    assert.equal(parseElf(image, 'higher-half.elf').entry, 0x100002);
  });

  test('an entry in a non-executable segment, or past its file bytes, stays as linked', () => {
    const high = 0xc0100000;
    const data = buildElf({ elfClass: 32, entry: high, segments: [{ physical: 0x100000, virtual: high, bytes: code, executable: false }] });
    assert.equal(parseElf(data, 'data.elf').entry, high);
    const bss = buildElf({ elfClass: 32, entry: high + 3, segments: [{ physical: 0x100000, virtual: high, bytes: code, memoryBytes: 0x100 }] });
    assert.equal(parseElf(bss, 'bss.elf').entry, high + 3);
  });

  test('segments with no memory are skipped, as QEMU skips them', () => {
    const image = buildElf({ elfClass: 64, entry: 0x100000, segments: [{ physical: 0x100000, bytes: code }, { physical: 0x500000, bytes: [] }] });
    assert.deepEqual(
      parseElf(image, 'test.elf').segments.map((segment) => segment.address),
      [0x100000],
    );
  });

  test('recognises the magic and the class', () => {
    const image = buildElf({ elfClass: 64, entry: 0, segments: [{ physical: 0x100000, bytes: code }] });
    assert.equal(isElf(image), true);
    assert.equal(elfClassOf(image), 64);
    assert.equal(isElf(Uint8Array.of(0x7f, 0x45, 0x4c)), false);
    assert.equal(elfClassOf(Uint8Array.of(0x7f, 0x45, 0x4c, 0x46, 3)), undefined);
    assert.equal(machineName(183), 'AArch64');
    assert.equal(machineName(9999), 'machine 9999');
  });

  describe('a malformed ELF is refused with ENOEXEC, never read past its end', () => {
    const valid = (): Uint8Array => buildElf({ elfClass: 64, entry: 0x100000, segments: [{ physical: 0x100000, bytes: code }] });
    const cases: [string, (image: Uint8Array, view: DataView) => Uint8Array][] = [
      ['an unknown class', (image) => ((image[4] = 7), image)],
      ['a truncated header', (image) => image.subarray(0, 40)],
      ['big-endian data', (image) => ((image[5] = 2), image)],
      ['a position-independent executable', (image, view) => (view.setUint16(16, 3, true), image)],
      ['a relocatable object', (image, view) => (view.setUint16(16, 1, true), image)],
      ['no program headers', (image, view) => (view.setUint16(56, 0, true), image)],
      ['program headers of the wrong size', (image, view) => (view.setUint16(54, 32, true), image)],
      ['a program header table past the end', (image, view) => (view.setBigUint64(32, 0x10000n, true), image)],
      ['more file bytes than memory bytes', (image, view) => (view.setBigUint64(64 + 40, 1n, true), image)],
      ["a segment's bytes past the end", (image, view) => (view.setBigUint64(64 + 8, 0x10000n, true), image)],
      ['no loadable segment', (image, view) => (view.setUint32(64, 4, true), image)],
    ];
    for (const [name, damage] of cases) {
      test(name, () => {
        const image = valid();
        const damaged = damage(image, new DataView(image.buffer));
        assert.throws(() => parseElf(damaged, 'bad.elf'), rejectsWith('ENOEXEC'));
      });
    }
  });
});
