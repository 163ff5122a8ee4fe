import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { rejectsWith } from '../../testing/irq-chip-error.ts';
import { MEMORY_MAP_ENTRY_BYTES, MULTIBOOT_INFO_BYTES, MultibootInfoFlag, multibootStringsBytes, writeMultibootInfo } from './multiboot-info.ts';
import { pcMemoryMap } from './pc-memory-map.ts';

const MIB = 1 << 20;
const placement = { informationAddress: 0x9500, memoryMapAddress: 0x9000, stringsAddress: 0x104000, stringsEnd: 0x105000 };

function readString(memory: Uint8Array, at: number): string {
  const end = memory.indexOf(0, at);
  return new TextDecoder().decode(memory.subarray(at, end));
}

describe('the multiboot information structure, as QEMU writes it', () => {
  test('every field QEMU sets, at its offset; the rest 0', () => {
    const memory = new Uint8Array(2 * MIB).fill(0xee);
    const map = pcMemoryMap(2 * MIB);
    const written = writeMultibootInfo(memory, placement, 'kernel.elf quiet', map);
    const view = new DataView(memory.buffer);
    const field = (offset: number): number => view.getUint32(placement.informationAddress + offset, true);
    assert.equal(field(0), MultibootInfoFlag.Memory | MultibootInfoFlag.BootDevice | MultibootInfoFlag.CommandLine | MultibootInfoFlag.Modules | MultibootInfoFlag.MemoryMap | MultibootInfoFlag.BootLoaderName);
    assert.equal(field(0), 0x24f);
    assert.equal(field(4), 639, 'mem_lower');
    assert.equal(field(8), (2 * MIB - MIB - 128 * 1024) / 1024, 'mem_upper');
    assert.equal(field(12), 0x8000ffff, 'boot_device');
    assert.equal(field(16), placement.stringsAddress, 'cmdline');
    assert.equal(field(20), 0, 'mods_count');
    assert.equal(field(24), placement.stringsAddress, 'mods_addr: where QEMU puts its empty module array');
    assert.equal(field(44), map.length * MEMORY_MAP_ENTRY_BYTES, 'mmap_length');
    assert.equal(field(48), placement.memoryMapAddress, 'mmap_addr');
    assert.equal(field(64), written.bootLoaderNameAddress, 'boot_loader_name');
    for (const zero of [28, 32, 36, 40, 52, 56, 60, 68, 72, 76, 80, 84]) assert.equal(field(zero), 0, `offset ${zero}`);
    assert.equal(memory[placement.informationAddress + MULTIBOOT_INFO_BYTES], 0xee, 'nothing past the structure');
    assert.deepEqual(written, { informationAddress: 0x9500, commandLineAddress: 0x104000, bootLoaderNameAddress: 0x104011, stringsEnd: 0x104016 });
  });

  test('the command line, then "qemu" right after its NUL; the map as 24-byte entries whose size field says 20', () => {
    const memory = new Uint8Array(2 * MIB);
    const map = pcMemoryMap(2 * MIB);
    const written = writeMultibootInfo(memory, placement, 'kernel.elf café', map);
    assert.equal(readString(memory, written.commandLineAddress), 'kernel.elf café');
    assert.equal(readString(memory, written.bootLoaderNameAddress), 'qemu');
    assert.equal(written.stringsEnd - placement.stringsAddress, multibootStringsBytes('kernel.elf café'));
    const view = new DataView(memory.buffer);
    map.forEach((entry, index) => {
      const at = placement.memoryMapAddress + index * MEMORY_MAP_ENTRY_BYTES;
      assert.deepEqual([view.getUint32(at, true), view.getBigUint64(at + 4, true), view.getBigUint64(at + 12, true), view.getUint32(at + 20, true)], [20, BigInt(entry.base), BigInt(entry.length), entry.type]);
    });
  });

  test('strings that do not fit are ENOSPC, a NUL in the command line EINVAL; neither writes anything', () => {
    const memory = new Uint8Array(2 * MIB);
    const map = pcMemoryMap(2 * MIB);
    assert.throws(() => writeMultibootInfo(memory, placement, 'x'.repeat(0x1000), map), rejectsWith('ENOSPC'));
    assert.throws(() => writeMultibootInfo(memory, { ...placement, stringsEnd: 2 * MIB + 0x1000, stringsAddress: 2 * MIB - 4 }, 'kernel', map), rejectsWith('ENOSPC'));
    assert.throws(() => writeMultibootInfo(memory, placement, 'kernel\0evil', map), rejectsWith('EINVAL'));
    assert.ok(memory.every((byte) => byte === 0));
  });
});
