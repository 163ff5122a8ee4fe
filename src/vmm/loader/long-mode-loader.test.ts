import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { rejectsWith } from '../../testing/irq-chip-error.ts';
import { GUEST_IMAGE_ADDRESS } from '../../kvm/long-mode.ts';
import { loadImage } from './load-image.ts';
import { HANDSHAKE_REPORTER, buildElf } from './loader-test-support.ts';
import { LONG_MODE_BOOT_INFO, LONG_MODE_LOW_AREA_END } from './long-mode-loader.ts';
import { E820Type } from './pc-memory-map.ts';

const MIB = 1 << 20;
const options = { fileName: 'guest.elf', commandLine: 'x=1' };

function word(memory: Uint8Array, at: number): number {
  return new DataView(memory.buffer).getUint32(at, true);
}

describe('our 64-bit guests', () => {
  test('an ELF64: segments at p_paddr, the information in the boot page, the long-mode tables, a long-mode entry', () => {
    const memory = new Uint8Array(16 * MIB);
    const image = buildElf({ elfClass: 64, entry: 0x100000, segments: [{ physical: 0x100000, bytes: HANDSHAKE_REPORTER, memoryBytes: 0x2000 }] });
    const loaded = loadImage(memory, image, options);
    assert.equal(loaded.format, 'elf64');
    assert.deepEqual(loaded.boot, { mode: 'long', entry: 0x100000, bootInformation: LONG_MODE_BOOT_INFO.informationAddress });
    assert.deepEqual(loaded.extent, { start: 0x100000, end: 0x102000 });
    assert.deepEqual([...memory.subarray(0x100000, 0x100000 + HANDSHAKE_REPORTER.length)], HANDSHAKE_REPORTER);
    assert.equal(loaded.bootInformation.commandLineAddress, LONG_MODE_BOOT_INFO.stringsAddress);
    assert.equal(new TextDecoder().decode(memory.subarray(LONG_MODE_BOOT_INFO.stringsAddress, LONG_MODE_BOOT_INFO.stringsAddress + 13)), 'guest.elf x=1');
    assert.equal(word(memory, 0x1000) & ~0xfff, 0x2000, 'PML4[0] names the PDPT (long-mode.ts)');
  });

  test("a flat image: at 1 MiB, entered at its first byte", () => {
    const memory = new Uint8Array(16 * MIB);
    const loaded = loadImage(memory, Uint8Array.from(HANDSHAKE_REPORTER), { fileName: 'guest.bin' });
    assert.equal(loaded.format, 'flat');
    assert.deepEqual(loaded.boot, { mode: 'long', entry: GUEST_IMAGE_ADDRESS, bootInformation: LONG_MODE_BOOT_INFO.informationAddress });
    assert.deepEqual([...memory.subarray(GUEST_IMAGE_ADDRESS, GUEST_IMAGE_ADDRESS + HANDSHAKE_REPORTER.length)], HANDSHAKE_REPORTER);
  });

  test("their memory map reserves the VMM's tables and boot page", () => {
    const memory = new Uint8Array(16 * MIB);
    loadImage(memory, Uint8Array.from(HANDSHAKE_REPORTER), { fileName: 'guest.bin' });
    const map = LONG_MODE_BOOT_INFO.memoryMapAddress;
    const view = new DataView(memory.buffer);
    assert.deepEqual([view.getBigUint64(map + 4, true), view.getBigUint64(map + 12, true), view.getUint32(map + 20, true)], [0n, BigInt(LONG_MODE_LOW_AREA_END), E820Type.Reserved]);
    assert.deepEqual([view.getBigUint64(map + 28, true), view.getUint32(map + 44, true)], [BigInt(LONG_MODE_LOW_AREA_END), E820Type.Ram]);
  });

  describe('refused before anything is written', () => {
    const cases: [string, Uint8Array, string][] = [
      ["over the VMM's page tables", buildElf({ elfClass: 64, entry: 0x2000, segments: [{ physical: 0x2000, bytes: HANDSHAKE_REPORTER }] }), 'EINVAL'],
      ['in the video memory', buildElf({ elfClass: 64, entry: 0xa0000, segments: [{ physical: 0xa0000, bytes: HANDSHAKE_REPORTER }] }), 'EINVAL'],
      ['past the end of RAM', buildElf({ elfClass: 64, entry: 0x100000, segments: [{ physical: 0x100000, bytes: HANDSHAKE_REPORTER, memoryBytes: 16 * MIB }] }), 'ENOSPC'],
      ['a flat image larger than RAM above 1 MiB', new Uint8Array(15 * MIB + 1).fill(0x90), 'ENOSPC'],
      ['with its entry point outside it', buildElf({ elfClass: 64, entry: 0x300000, segments: [{ physical: 0x100000, bytes: HANDSHAKE_REPORTER }] }), 'ENOEXEC'],
    ];
    for (const [name, image, code] of cases) {
      test(`a guest ${name}: ${code}`, () => {
        const memory = new Uint8Array(16 * MIB);
        assert.throws(() => loadImage(memory, image, options), rejectsWith(code));
        assert.ok(memory.every((byte) => byte === 0));
      });
    }

    test('a command line longer than the boot page holds: ENOSPC', () => {
      const memory = new Uint8Array(16 * MIB);
      assert.throws(() => loadImage(memory, Uint8Array.from(HANDSHAKE_REPORTER), { fileName: 'guest.bin', commandLine: 'x'.repeat(4096) }), rejectsWith('ENOSPC'));
      assert.ok(memory.every((byte) => byte === 0));
    });
  });
});
