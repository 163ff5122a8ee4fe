import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rejectsWith } from '../testing/irq-chip-error.ts';
import { Bus, type BusAccessor, type BusDevice } from './bus.ts';

class RecordingDevice implements BusDevice {
  readonly accesses: string[] = [];
  constructor(readonly busName: string) {}
  read(offset: number, size: number, accessor: BusAccessor): number {
    this.accesses.push(`r ${offset} ${size} cpu${accessor.vcpuIndex}`);
    return 0x40 + offset;
  }
  write(offset: number, size: number, value: number, accessor: BusAccessor): void {
    this.accesses.push(`w ${offset} ${size} ${value} cpu${accessor.vcpuIndex}`);
  }
}

const cpu0 = { vcpuIndex: 0 };

test('accesses reach the device at the offset into its range, with the accessing vCPU', () => {
  const bus = new Bus('io', 0x10000);
  const master = new RecordingDevice('pic-master');
  const elcr = new RecordingDevice('elcr');
  bus.insert(master, 0x20, 2);
  bus.insert(elcr, 0x4d0, 2);
  assert.equal(bus.read(0x21, 1, { vcpuIndex: 1 }), 0x41);
  bus.write(0x4d1, 1, 0xde, cpu0);
  assert.deepEqual(master.accesses, ['r 1 1 cpu1']);
  assert.deepEqual(elcr.accesses, ['w 1 1 222 cpu0']);
});

test('unclaimed addresses read all ones and drop writes, and are counted', () => {
  const bus = new Bus('io', 0x10000);
  bus.insert(new RecordingDevice('pic'), 0x20, 2);
  assert.equal(bus.read(0x22, 1, cpu0), 0xff);
  assert.equal(bus.read(0x1f, 2, cpu0), 0xffff);
  assert.equal(bus.read(0x80, 4, cpu0), 0xffffffff);
  bus.write(0x80, 1, 1, cpu0);
  assert.deepEqual(bus.counters(), { unclaimedReads: 3, unclaimedWrites: 1 });
});

test('overlapping ranges are EEXIST and change nothing; remove frees a range; removing nothing is ENOENT', () => {
  const bus = new Bus('mmio', 2 ** 52);
  const ioapic = new RecordingDevice('ioapic');
  bus.insert(ioapic, 0xfec00000, 0x100);
  assert.throws(() => {
    bus.insert(new RecordingDevice('other'), 0xfec000ff, 1);
  }, rejectsWith('EEXIST'));
  assert.throws(() => {
    bus.insert(new RecordingDevice('other'), 0xfebfff00, 0x101);
  }, rejectsWith('EEXIST'));
  bus.insert(new RecordingDevice('after'), 0xfec00100, 0x10);
  assert.equal(bus.resolve(0xfec000ff)?.device, ioapic);
  bus.remove(0xfec00000);
  assert.equal(bus.resolve(0xfec00000), undefined);
  assert.throws(() => {
    bus.remove(0xfec00000);
  }, rejectsWith('ENOENT'));
});

test('bad ranges and access sizes are EINVAL', () => {
  const bus = new Bus('io', 0x10000);
  assert.throws(() => {
    bus.insert(new RecordingDevice('x'), 0xffff, 2);
  }, rejectsWith('EINVAL'));
  assert.throws(() => {
    bus.insert(new RecordingDevice('x'), 0x10, 0);
  }, rejectsWith('EINVAL'));
  assert.throws(() => bus.read(0x20, 3, cpu0), rejectsWith('EINVAL'));
  assert.throws(() => {
    bus.write(0x20, 0, 0, cpu0);
  }, rejectsWith('EINVAL'));
});
