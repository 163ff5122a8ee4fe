import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { rejectsWith } from '../../testing/irq-chip-error.ts';
import { AOUT_KLUDGE_FLAGS, multibootHeader } from './loader-test-support.ts';
import { MULTIBOOT_HEADER_MAGIC, MULTIBOOT_SEARCH_BYTES, MultibootHeaderFlag, findMultibootHeader, multibootFlagWarnings } from './multiboot-header.ts';

function imageWith(header: readonly number[], at: number, length = at + header.length + 16): Uint8Array {
  const image = new Uint8Array(length);
  image.set(header, at);
  return image;
}

const addresses = { headerAddress: 0x100000, loadAddress: 0x100000, loadEndAddress: 0x101000, bssEndAddress: 0x102000, entryAddress: 0x100020 };

describe('multiboot header', () => {
  test('found at any 32-bit aligned offset QEMU scans, with its flags', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MULTIBOOT_SEARCH_BYTES / 4 - 1 }), fc.integer({ min: 0, max: 0xffff }), (slot, flags) => {
        const found = findMultibootHeader(imageWith(multibootHeader(flags), slot * 4), 'kernel');
        assert.deepEqual(found, { offset: slot * 4, flags });
      }),
    );
  });

  test('not found past the offset QEMU stops at (8192 - 48), at an unaligned offset, or with a wrong checksum', () => {
    assert.equal(findMultibootHeader(imageWith(multibootHeader(0), MULTIBOOT_SEARCH_BYTES), 'kernel'), undefined);
    assert.equal(findMultibootHeader(imageWith(multibootHeader(0), 6), 'kernel'), undefined);
    const badChecksum = multibootHeader(0);
    badChecksum[8] = (badChecksum[8] ?? 0) ^ 1;
    assert.equal(findMultibootHeader(imageWith(badChecksum, 0), 'kernel'), undefined);
  });

  test('the first header whose words check out wins: a magic with a wrong checksum before it is skipped', () => {
    const image = new Uint8Array(64);
    image.set([...multibootHeader(0).slice(0, 8), 0, 0, 0, 0], 0);
    image.set(multibootHeader(MultibootHeaderFlag.MemoryInfo), 16);
    assert.deepEqual(findMultibootHeader(image, 'kernel'), { offset: 16, flags: MultibootHeaderFlag.MemoryInfo });
  });

  test('a header cut off by the end of the file is not a header; the a.out fields cut off are refused', () => {
    assert.equal(findMultibootHeader(Uint8Array.from(multibootHeader(0).slice(0, 11)), 'kernel'), undefined);
    assert.deepEqual(findMultibootHeader(Uint8Array.from(multibootHeader(0)), 'kernel'), { offset: 0, flags: 0 });
    const cut = Uint8Array.from(multibootHeader(AOUT_KLUDGE_FLAGS, addresses).slice(0, 28));
    assert.throws(() => findMultibootHeader(cut, 'kernel'), rejectsWith('ENOEXEC'));
  });

  test('with the a.out kludge flag, the load addresses are read', () => {
    const found = findMultibootHeader(imageWith(multibootHeader(AOUT_KLUDGE_FLAGS, addresses), 8), 'kernel');
    assert.deepEqual(found, { offset: 8, flags: AOUT_KLUDGE_FLAGS, loadAddresses: addresses });
  });

  test('the checksum is the two-complement of magic + flags', () => {
    const words = new DataView(Uint8Array.from(multibootHeader(0x10003)).buffer);
    assert.equal((words.getUint32(0, true) + words.getUint32(4, true) + words.getUint32(8, true)) % 2 ** 32, 0);
    assert.equal(words.getUint32(0, true), MULTIBOOT_HEADER_MAGIC);
  });

  test('flags the loader does not meet are named in warnings, as QEMU boots such images anyway', () => {
    assert.deepEqual(multibootFlagWarnings(MultibootHeaderFlag.PageAlign | MultibootHeaderFlag.MemoryInfo | MultibootHeaderFlag.AoutKludge), []);
    const video = multibootFlagWarnings(MultibootHeaderFlag.VideoMode);
    assert.equal(video.length, 1);
    assert.match(video[0] ?? '', /video mode/);
    const unknown = multibootFlagWarnings(1 << 5);
    assert.equal(unknown.length, 1);
    assert.match(unknown[0] ?? '', /0x20/);
    assert.deepEqual(multibootFlagWarnings(1 << 20), [], 'bits 16-31 are optional features, not requirements');
  });
});
