import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { IrqChipError } from '../../base/errors.ts';
import { rejectsWith } from '../../testing/irq-chip-error.ts';
import { kernelCommandLine, loadImage } from './load-image.ts';
import { AOUT_KLUDGE_FLAGS, HANDSHAKE_REPORTER, buildElf, multibootHeader } from './loader-test-support.ts';

const MIB = 1 << 20;

/** A file `npm run build:guests` wrote. */
function builtGuest(file: string): Uint8Array {
  return readFileSync(new URL(`../../../guests/build/${file}`, import.meta.url));
}

describe('loadImage', () => {
  test('the command line is "<file name> <arguments>", as QEMU composes it: a trailing space when there are none', () => {
    assert.equal(kernelCommandLine({ fileName: 'guests/build/k.elf32', commandLine: 'a b' }), 'guests/build/k.elf32 a b');
    assert.equal(kernelCommandLine({ fileName: 'k.elf32' }), 'k.elf32 ');
  });

  test('the multiboot test image (objcopy -O elf32-i386) is a multiboot kernel; its 64-bit link is refused as QEMU refuses it', () => {
    const loaded = loadImage(new Uint8Array(128 * MIB), builtGuest('multiboot-hello.elf32'), { fileName: 'multiboot-hello.elf32' });
    assert.equal(loaded.description, 'multiboot kernel (ELF32)');
    assert.equal(loaded.boot.mode, 'protected');
    assert.equal(loaded.boot.bootInformation, 0x9500);
    const memory = new Uint8Array(128 * MIB);
    assert.throws(() => loadImage(memory, builtGuest('multiboot-hello.elf64'), { fileName: 'multiboot-hello.elf64' }), rejectsWith('ENOEXEC'));
  });

  test('our C guests load as 64-bit guests, from their ELF or their flat image, at the same entry', () => {
    const elf = loadImage(new Uint8Array(128 * MIB), builtGuest('irq-probe.elf'), { fileName: 'irq-probe.elf' });
    const flat = loadImage(new Uint8Array(128 * MIB), builtGuest('irq-probe.bin'), { fileName: 'irq-probe.bin' });
    assert.deepEqual([elf.format, flat.format], ['elf64', 'flat']);
    assert.equal(elf.boot.entry, flat.boot.entry);
    assert.equal(elf.boot.mode, 'long');
  });

  test('damaged images load or are refused with IrqChipError, never another error (nothing is read past their end)', () => {
    const kludge = { headerAddress: 0x100000, loadAddress: 0x100000, loadEndAddress: 0, bssEndAddress: 0x101000, entryAddress: 0x100020 };
    const valid = [
      buildElf({ elfClass: 64, entry: 0x100000, segments: [{ physical: 0x100000, bytes: HANDSHAKE_REPORTER }] }),
      buildElf({ elfClass: 32, entry: 0x10000c, segments: [{ physical: 0x100000, bytes: [...multibootHeader(3), ...HANDSHAKE_REPORTER] }] }),
      Uint8Array.from([...multibootHeader(AOUT_KLUDGE_FLAGS, kludge), ...HANDSHAKE_REPORTER]),
    ];
    const damage = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 });
    fc.assert(
      fc.property(fc.constantFrom(...valid), damage, fc.nat(), (image, changes, cut) => {
        const damaged = image.slice(0, image.length - (cut % (image.length + 1)));
        for (const [at, value] of changes) if (damaged.length > 0) damaged[at % damaged.length] = value;
        try {
          loadImage(new Uint8Array(2 * MIB), damaged, { fileName: 'damaged' });
        } catch (error) {
          assert.ok(error instanceof IrqChipError, String(error));
        }
      }),
    );
  });
});
