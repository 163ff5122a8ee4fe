import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IrqChipError } from '../../base/errors.ts';
import { identifyImage } from './image-format.ts';
import { AOUT_KLUDGE_FLAGS, buildElf, dword, multibootHeader } from './loader-test-support.ts';

const code = [0x90, 0xf4];
const kludge = { headerAddress: 0x100000, loadAddress: 0x100000, loadEndAddress: 0, bssEndAddress: 0, entryAddress: 0x100020 };

/** The refusal's code and message, or 'accepted'. */
function refusal(image: Uint8Array): { code: string; message: string } | 'accepted' {
  try {
    identifyImage(image, 'image.bin');
    return 'accepted';
  } catch (error) {
    if (!(error instanceof IrqChipError)) throw error;
    return { code: error.code, message: error.message };
  }
}

function assertRefused(image: Uint8Array, message: RegExp): void {
  const result = refusal(image);
  assert.notEqual(result, 'accepted');
  if (result === 'accepted') return;
  assert.equal(result.code, 'ENOEXEC');
  assert.match(result.message, message);
}

describe('which loader an image needs', () => {
  test('an x86-64 ELF is one of our 64-bit guests', () => {
    const image = buildElf({ elfClass: 64, entry: 0x100000, segments: [{ physical: 0x100000, bytes: code }] });
    assert.equal(identifyImage(image, 'guest.elf').kind, 'elf64');
  });

  test('a 32-bit i386 ELF with a multiboot header is a multiboot kernel read from its ELF', () => {
    const image = buildElf({ elfClass: 32, entry: 0x10000c, segments: [{ physical: 0x100000, bytes: [...multibootHeader(3), ...code] }] });
    const identified = identifyImage(image, 'kernel.elf');
    assert.equal(identified.kind, 'multiboot-elf');
  });

  test('any image whose multiboot header sets the a.out kludge is loaded from the header, ELF or not (QEMU looks at the flag first)', () => {
    const flat = Uint8Array.from([...multibootHeader(AOUT_KLUDGE_FLAGS, kludge), ...code]);
    assert.equal(identifyImage(flat, 'kernel.bin').kind, 'multiboot-aout');
    const elf64 = buildElf({ elfClass: 64, entry: 0x100020, segments: [{ physical: 0x100000, bytes: [...multibootHeader(AOUT_KLUDGE_FLAGS, kludge), ...code] }] });
    assert.equal(identifyImage(elf64, 'kernel.elf').kind, 'multiboot-aout');
  });

  test('anything else that no format claims is a flat image', () => {
    assert.equal(identifyImage(Uint8Array.from(code), 'guest.bin').kind, 'flat');
    assert.equal(identifyImage(Uint8Array.of(0x4d), 'guest.bin').kind, 'flat');
  });

  describe('plainly another format is refused with ENOEXEC and says what it looks like', () => {
    test('an empty file', () => {
      assertRefused(new Uint8Array(0), /is empty/);
    });

    test('a Linux bzImage ("HdrS" at 0x202), even with a multiboot header and an MZ stub', () => {
      const image = new Uint8Array(0x400);
      image.set([0x4d, 0x5a]);
      image.set([...dword(0x53726448), 0x0f, 0x02], 0x202);
      image.set(multibootHeader(0), 0x300);
      assertRefused(image, /Linux kernel \(bzImage, boot protocol 2\.15\)/);
    });

    test('a multiboot header without the a.out kludge on something that is not an ELF', () => {
      assertRefused(Uint8Array.from([...multibootHeader(3), ...code]), /must be an ELF/);
    });

    test('an x86-64 ELF with a multiboot header, which QEMU refuses too', () => {
      const image = buildElf({ elfClass: 64, entry: 0x10000c, segments: [{ physical: 0x100000, bytes: [...multibootHeader(3), ...code] }] });
      assertRefused(image, /Cannot load x86-64 image, give a 32bit one.*objcopy -O elf32-i386/);
    });

    test('a multiboot ELF that is not 32-bit i386', () => {
      const image = buildElf({ elfClass: 32, machine: 40, entry: 0x10000c, segments: [{ physical: 0x100000, bytes: [...multibootHeader(3), ...code] }] });
      assertRefused(image, /32-bit ARM ELF with a multiboot header/);
    });

    test('a 32-bit i386 ELF without a multiboot header', () => {
      assertRefused(buildElf({ elfClass: 32, entry: 0x100000, segments: [{ physical: 0x100000, bytes: code }] }), /32-bit i386 ELF without a multiboot header/);
    });

    test('an ELF for another machine', () => {
      assertRefused(buildElf({ elfClass: 64, machine: 183, entry: 0x100000, segments: [{ physical: 0x100000, bytes: code }] }), /64-bit AArch64, not x86-64/);
      const unknownClass = buildElf({ elfClass: 64, entry: 0x100000, segments: [{ physical: 0x100000, bytes: code }] });
      unknownClass[4] = 9;
      assertRefused(unknownClass, /unknown class/);
    });

    test('a DOS/PE executable such as an EFI application', () => {
      assertRefused(Uint8Array.from([0x4d, 0x5a, 0x90, 0x00]), /"MZ".*EFI/);
    });
  });
});
