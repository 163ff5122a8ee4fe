import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { rejectsWith } from '../../testing/irq-chip-error.ts';
import { loadImage } from './load-image.ts';
import { AOUT_KLUDGE_FLAGS, buildElf, multibootHeader } from './loader-test-support.ts';
import { findMultibootHeader, MultibootHeaderFlag, type MultibootLoadAddresses } from './multiboot-header.ts';
import { MULTIBOOT_INFO_ADDRESS, multibootKernelFromAout } from './multiboot-loader.ts';
import { PROTECTED_MODE_GDT_ADDRESS } from './protected-mode.ts';

const MIB = 1 << 20;
const code = [0xf4, 0xf4, 0xf4, 0xf4];
const options = { fileName: 'kernel', commandLine: 'a b' };

function field(memory: Uint8Array, offset: number): number {
  return new DataView(memory.buffer).getUint32(MULTIBOOT_INFO_ADDRESS + offset, true);
}

function stringAt(memory: Uint8Array, at: number): string {
  return new TextDecoder().decode(memory.subarray(at, memory.indexOf(0, at)));
}

/** A multiboot ELF32: the header and code at `physical`, then `extra` segments. */
function multibootElf(physical: number, flags = 3, extra: readonly { physical: number; bytes: number[]; memoryBytes?: number }[] = []): Uint8Array {
  return buildElf({ elfClass: 32, entry: physical + 12, segments: [{ physical, bytes: [...multibootHeader(flags), ...code] }, ...extra] });
}

/** An a.out-kludge image: `prefix` bytes, the header, then `body`. */
function aoutImage(addresses: MultibootLoadAddresses, prefix = 0, body: readonly number[] = code): Uint8Array {
  return Uint8Array.from([...new Array<number>(prefix).fill(0xaa), ...multibootHeader(AOUT_KLUDGE_FLAGS, addresses), ...body]);
}

describe('multiboot kernels, loaded as QEMU -kernel loads them', () => {
  test('an ELF32 kernel: segments at p_paddr with .bss zeroed; the information at 0x9500; the strings at the page after the kernel; the boot GDT', () => {
    const memory = new Uint8Array(16 * MIB).fill(0xee);
    const image = multibootElf(0x100000, 3, [{ physical: 0x102000, bytes: [1, 2], memoryBytes: 0x1800 }]);
    const loaded = loadImage(memory, image, options);
    assert.equal(loaded.format, 'multiboot');
    assert.equal(loaded.description, 'multiboot kernel (ELF32)');
    assert.deepEqual(loaded.extent, { start: 0x100000, end: 0x103800 });
    assert.deepEqual(loaded.boot, { mode: 'protected', entry: 0x10000c, bootInformation: 0x9500 });
    assert.deepEqual([...memory.subarray(0x10000c, 0x100010)], code);
    assert.deepEqual([...memory.subarray(0x102000, 0x102002)], [1, 2]);
    assert.ok(memory.subarray(0x102002, 0x103800).every((byte) => byte === 0), '.bss zeroed');
    assert.equal(memory[0x103800], 0xee, 'nothing past the kernel but its strings');
    assert.equal(field(memory, 16), 0x104000, 'cmdline at the load address plus the kernel size rounded up to a page');
    assert.equal(stringAt(memory, 0x104000), 'kernel a b');
    assert.equal(stringAt(memory, field(memory, 64)), 'qemu');
    assert.equal(field(memory, 48), 0x9000, 'mmap_addr');
    const gdt = new DataView(memory.buffer, PROTECTED_MODE_GDT_ADDRESS, 24);
    assert.deepEqual([gdt.getBigUint64(0, true), gdt.getBigUint64(8, true), gdt.getBigUint64(16, true)], [0n, 0x00cf9a000000ffffn, 0x00cf92000000ffffn]);
    assert.deepEqual(loaded.warnings, []);
  });

  test('the strings follow the load address plus the rounded size, not the rounded end (QEMU: mb_buf_phys + TARGET_PAGE_ALIGN(size))', () => {
    const memory = new Uint8Array(16 * MIB);
    const loaded = loadImage(memory, multibootElf(0x100800), options);
    assert.equal(loaded.bootInformation.commandLineAddress, 0x101800);
  });

  test('a kernel asking for a video mode still loads, with a warning', () => {
    const loaded = loadImage(new Uint8Array(16 * MIB), multibootElf(0x100000, 3 | MultibootHeaderFlag.VideoMode), options);
    assert.equal(loaded.warnings.length, 1);
  });

  describe('the a.out kludge, with QEMU\'s arithmetic', () => {
    const base = { headerAddress: 0x100000, loadAddress: 0x100000, loadEndAddress: 0, bssEndAddress: 0, entryAddress: 0x100020 };
    const kernelOf = (image: Uint8Array) => {
      const header = findMultibootHeader(image, 'kernel');
      assert.ok(header?.loadAddresses !== undefined);
      return multibootKernelFromAout(image, header, header.loadAddresses, 'kernel');
    };

    test('load_end_addr 0 loads to the end of the file; bss_end_addr 0 adds no .bss', () => {
      const image = aoutImage(base);
      const kernel = kernelOf(image);
      assert.equal(kernel.loadAddress, 0x100000);
      assert.equal(kernel.kernelBytes, image.length);
      assert.deepEqual(kernel.segments.map((segment) => [segment.address, segment.bytes.length, segment.memoryBytes]), [[0x100000, image.length, image.length]]);
    });

    test('the file is read from header offset - (header_addr - load_addr), up to load_end_addr, then .bss to bss_end_addr', () => {
      const image = aoutImage({ ...base, headerAddress: 0x100008, loadEndAddress: 0x100020, bssEndAddress: 0x101000, entryAddress: 0x100010 }, 16);
      const kernel = kernelOf(image);
      assert.deepEqual([kernel.loadAddress, kernel.kernelBytes, kernel.entry], [0x100000, 0x1000, 0x100010]);
      const [segment] = kernel.segments;
      assert.deepEqual([segment?.address, segment?.bytes.length, segment?.memoryBytes], [0x100000, 0x20, 0x1000]);
      assert.deepEqual([...(segment?.bytes.subarray(0, 8) ?? [])], [0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa], 'from file offset 16 - 8 = 8');
    });

    test('loaded and started like any multiboot kernel', () => {
      const memory = new Uint8Array(16 * MIB);
      const image = aoutImage({ ...base, bssEndAddress: 0x102000 });
      const loaded = loadImage(memory, image, options);
      assert.equal(loaded.description, 'multiboot kernel (a.out kludge)');
      assert.deepEqual(loaded.boot, { mode: 'protected', entry: 0x100020, bootInformation: 0x9500 });
      assert.deepEqual(memory.subarray(0x100000, 0x100000 + image.length), image);
      assert.equal(loaded.bootInformation.commandLineAddress, 0x102000);
    });

    const refusals: [string, Partial<MultibootLoadAddresses>][] = [
      ['header_addr below load_addr', { headerAddress: 0xfffff }],
      ['a header_addr that puts the start before the file', { headerAddress: 0x100010 }],
      ['load_end_addr below load_addr', { loadEndAddress: 0xff000 }],
      ['a load past 4 GiB', { loadAddress: 0xffffffff, headerAddress: 0xffffffff, entryAddress: 0xffffffff }],
      ['bss_end_addr below the loaded end', { bssEndAddress: 0x100001 }],
      ['load_end_addr past the end of the file', { loadEndAddress: 0x110000 }],
      ['nothing to load', { loadEndAddress: 0x100000 }],
    ];
    for (const [name, change] of refusals) {
      test(`refused with ENOEXEC: ${name}`, () => {
        assert.throws(() => kernelOf(aoutImage({ ...base, ...change })), rejectsWith('ENOEXEC'));
      });
    }
  });

  describe('refused before anything is written', () => {
    const cases: [string, () => Uint8Array, string][] = [
      ['over the multiboot information at 0x9000', () => multibootElf(0x9000), 'EINVAL'],
      ["in the EBDA, video and BIOS area", () => multibootElf(0xb8000), 'EINVAL'],
      ['past the end of RAM', () => multibootElf(16 * MIB - 8), 'ENOSPC'],
      ['so that its command line would land on the information', () => multibootElf(0x8000), 'EINVAL'],
      ['with its entry point outside it', () => buildElf({ elfClass: 32, entry: 0x200000, segments: [{ physical: 0x100000, bytes: [...multibootHeader(3), ...code] }] }), 'ENOEXEC'],
      ['with two segments on the same memory', () => multibootElf(0x100000, 3, [{ physical: 0x100004, bytes: [1] }]), 'ENOEXEC'],
    ];
    for (const [name, image, code] of cases) {
      test(`a kernel ${name}: ${code}`, () => {
        const memory = new Uint8Array(16 * MIB);
        assert.throws(() => loadImage(memory, image(), options), rejectsWith(code));
        assert.ok(memory.every((byte) => byte === 0));
      });
    }

    test('a command line that does not fit in RAM after the kernel: ENOSPC', () => {
      const memory = new Uint8Array(2 * MIB);
      assert.throws(() => loadImage(memory, multibootElf(2 * MIB - 0x1000), { fileName: 'kernel', commandLine: 'x'.repeat(64) }), rejectsWith('ENOSPC'));
      assert.ok(memory.every((byte) => byte === 0));
    });
  });
});
