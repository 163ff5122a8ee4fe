import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { IrqChipError } from '../../base/errors.ts';
import { FW_CFG_COUNTER_NAMES, FwCfg, FwCfgKey, type FwCfgOptions } from './fw-cfg.ts';

const SELECTOR = 0;
const DATA = 1;
const OPTIONS: FwCfgOptions = { cpuCount: 2, maxCpus: 4, ramBytes: 128 * 2 ** 20, commandLine: 'console=ttyS0 x=1' };

/** What kvm-unit-tests' lib/x86/fwcfg.c does: a 16-bit OUT of the key to 0x510, then byte INs from 0x511. */
function readItem(device: FwCfg, key: number, bytes: number): number[] {
  device.write(SELECTOR, 2, key);
  return Array.from({ length: bytes }, () => device.read(DATA, 1));
}

function littleEndianValue(bytes: readonly number[]): bigint {
  return bytes.reduceRight((value, byte) => (value << 8n) | BigInt(byte), 0n);
}

describe('FwCfg: the items', () => {
  test('before any selection the signature is selected: "QEMU" (QEMU fw_cfg_reset)', () => {
    const device = new FwCfg(OPTIONS);
    assert.equal(String.fromCharCode(...Array.from({ length: 4 }, () => device.read(DATA, 1))), 'QEMU');
    assert.equal(device.read(DATA, 1), 0, 'then zeros past its end');
  });

  test('signature, ID (traditional interface only), RAM size, CPU count, maximum CPUs, as QEMU encodes them', () => {
    const device = new FwCfg(OPTIONS);
    assert.deepEqual(readItem(device, FwCfgKey.Signature, 4), [0x51, 0x45, 0x4d, 0x55], '"QEMU"');
    assert.equal(littleEndianValue(readItem(device, FwCfgKey.Id, 4)), 1n, 'bit 0 only: no DMA interface');
    assert.equal(littleEndianValue(readItem(device, FwCfgKey.RamSize, 8)), 128n << 20n);
    assert.equal(littleEndianValue(readItem(device, FwCfgKey.CpuCount, 2)), 2n);
    assert.equal(littleEndianValue(readItem(device, FwCfgKey.MaxCpus, 2)), 4n);
    assert.deepEqual(device.counters(), { dataWrites: 0, invalidAccesses: 0, unknownKeys: 0, readsPastEnd: 0, accessesPastEnd: 0 });
  });

  test('RAM above 4 GiB keeps its high half (u64)', () => {
    const device = new FwCfg({ ...OPTIONS, ramBytes: 6 * 2 ** 30 + 4096 });
    assert.equal(littleEndianValue(readItem(device, FwCfgKey.RamSize, 8)), 6n * 2n ** 30n + 4096n);
  });

  test('the command line: its size with the NUL, then the UTF-8 bytes and the NUL', () => {
    const device = new FwCfg({ ...OPTIONS, commandLine: 'root=/dev/vda é' });
    const text = new TextEncoder().encode('root=/dev/vda é');
    assert.equal(littleEndianValue(readItem(device, FwCfgKey.CommandLineSize, 4)), BigInt(text.length + 1));
    assert.deepEqual(readItem(device, FwCfgKey.CommandLineData, text.length + 1), [...text, 0]);
    const empty = new FwCfg({ ...OPTIONS, commandLine: '' });
    assert.equal(littleEndianValue(readItem(empty, FwCfgKey.CommandLineSize, 4)), 1n);
    assert.deepEqual(readItem(empty, FwCfgKey.CommandLineData, 1), [0]);
  });

  test('the file directory is consistent and empty: a big-endian count of 0', () => {
    const device = new FwCfg(OPTIONS);
    assert.deepEqual(readItem(device, FwCfgKey.FileDirectory, 4), [0, 0, 0, 0]);
  });

  test('kvm-unit-tests’ FW_CFG_MAX_RAM (0x10) reads 0, its "no limit"; so do the architecture keys (IRQ0 override 0x8002: the PIT is on GSI 0)', () => {
    const device = new FwCfg(OPTIONS);
    assert.equal(littleEndianValue(readItem(device, 0x10, 8)), 0n);
    assert.equal(littleEndianValue(readItem(device, 0x8002, 4)), 0n);
    assert.equal(device.counters().unknownKeys, 2);
  });

  test('the write-channel bit (14) is ignored for reading: 0x4005 reads the CPU count', () => {
    const device = new FwCfg(OPTIONS);
    assert.equal(littleEndianValue(readItem(device, 0x4000 | FwCfgKey.CpuCount, 2)), 2n);
  });
});

describe('FwCfg: the ports, as QEMU’s combined region takes them', () => {
  test('selecting rewinds the item; a byte read of 0x510 reads data too', () => {
    const device = new FwCfg(OPTIONS);
    readItem(device, FwCfgKey.Signature, 2);
    device.write(SELECTOR, 2, FwCfgKey.Signature);
    assert.equal(device.read(SELECTOR, 1), 0x51, "'Q' from port 0x510");
    assert.equal(device.read(DATA, 1), 0x45);
  });

  test('a dword OUT to 0x510 selects with its low word (cut at the region’s end); word and dword reads are refused and read 0', () => {
    const device = new FwCfg(OPTIONS);
    device.write(SELECTOR, 4, 0xabcd0000 | FwCfgKey.CpuCount);
    assert.equal(device.read(DATA, 1), 2);
    assert.equal(device.read(SELECTOR, 2), 0);
    assert.equal(device.read(SELECTOR, 4), 0xffff0000, 'the refused word, then two undriven lanes');
    assert.equal(device.read(DATA, 1), 0, 'the refused reads consumed nothing: the CPU count’s high byte');
    assert.deepEqual(device.counters(), { dataWrites: 0, invalidAccesses: 2, unknownKeys: 0, readsPastEnd: 0, accessesPastEnd: 2 });
  });

  test('byte writes are ignored and counted (QEMU ≥ 2.4), and change neither the selection nor the offset', () => {
    const device = new FwCfg(OPTIONS);
    device.write(SELECTOR, 2, FwCfgKey.Signature);
    device.write(DATA, 1, 0x41);
    device.write(SELECTOR, 1, 0x05);
    device.write(DATA, 2, 0x0505);
    assert.equal(device.read(DATA, 1), 0x51);
    assert.deepEqual(device.counters(), { dataWrites: 3, invalidAccesses: 0, unknownKeys: 0, readsPastEnd: 0, accessesPastEnd: 1 });
    assert.deepEqual(Object.keys(device.counters()), [...FW_CFG_COUNTER_NAMES]);
  });

  test('any key: the data port streams the item, then reads 0 past its end (counted); a key with no item reads 0', () => {
    const commandLine = [...new TextEncoder().encode(OPTIONS.commandLine), 0];
    const items = new Map<number, readonly number[]>([
      [FwCfgKey.Signature, [0x51, 0x45, 0x4d, 0x55]],
      [FwCfgKey.Id, [1, 0, 0, 0]],
      [FwCfgKey.RamSize, [0, 0, 0, 8, 0, 0, 0, 0]],
      [FwCfgKey.CpuCount, [2, 0]],
      [FwCfgKey.MaxCpus, [4, 0]],
      [FwCfgKey.CommandLineSize, [commandLine.length, 0, 0, 0]],
      [FwCfgKey.CommandLineData, commandLine],
      [FwCfgKey.FileDirectory, [0, 0, 0, 0]],
    ]);
    fc.assert(
      fc.property(fc.oneof(fc.constantFrom(...items.keys()), fc.nat({ max: 0xffff })), fc.nat({ max: 24 }), (key, reads) => {
        const device = new FwCfg(OPTIONS);
        // Bit 14 (the write channel) is ignored; bit 15 selects the architecture's items, of which there are none.
        const item = items.get(key & 0xbfff);
        const bytes = readItem(device, key, reads);
        const expected = Array.from({ length: reads }, (_, index) => item?.[index] ?? 0);
        assert.deepEqual(bytes, expected);
        assert.equal(device.counters().readsPastEnd, item === undefined ? 0 : Math.max(0, reads - item.length));
      }),
    );
  });
});

describe('FwCfg: caller mistakes throw EINVAL', () => {
  test('CPU counts out of [1, 65535], maximum below the count, RAM not a non-negative safe integer, a NUL in the command line', () => {
    for (const options of [
      { ...OPTIONS, cpuCount: 0 },
      { ...OPTIONS, cpuCount: 1.5 },
      { ...OPTIONS, cpuCount: 0x10000, maxCpus: 0x10000 },
      { ...OPTIONS, maxCpus: 1 },
      { ...OPTIONS, ramBytes: -1 },
      { ...OPTIONS, ramBytes: 2 ** 53 },
      { ...OPTIONS, commandLine: 'a\0b' },
      { ...OPTIONS, commandLine: 5 as unknown as string },
    ]) {
      assert.throws(() => new FwCfg(options), (error: unknown) => error instanceof IrqChipError && error.code === 'EINVAL', JSON.stringify(options));
    }
  });
});
