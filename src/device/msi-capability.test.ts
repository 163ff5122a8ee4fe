/**
 * `MsiCapability` over an emulated device's `ChipInterruptGroup`: the guest's registers, delivery
 * of each vector with the Data's low MME bits, per-vector masking with Pending Bits, reprogramming
 * and a spent GSI budget. (Over VFIO's vectors: src/vfio/vfio-pci-interrupts.msi.test.ts.)
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { rejectsWith } from '../testing/irq-chip-error.ts';
import type { ChipInterruptGroup } from './chip-interrupt-group.ts';
import { makeDeviceMachine, msiTo, takenVectors, type DeviceMachine, type DeviceMachineOptions } from './device-test-support.ts';
import { MSI_CAPABILITY_ID, MSI_ENABLE, MSI_MME_SHIFT, MsiCapability } from './msi-capability.ts';

/** Message Control's read-only bits for 4 vectors: MMC = 2, 64-bit capable, per-vector masking capable. */
const CAPABLE_4 = (2 << 1) | (1 << 7) | (1 << 8);
const Offset = { Control: 2, Address: 4, UpperAddress: 8, Data: 12, MaskBits: 16, PendingBits: 20 } as const;
const BASE_VECTOR = 0x60;

interface MsiRig {
  readonly machine: DeviceMachine;
  readonly group: ChipInterruptGroup;
  readonly msi: MsiCapability;
}

function makeMsiRig(count = 4, options: DeviceMachineOptions = {}): MsiRig {
  const machine = makeDeviceMachine(options);
  const group = machine.manager.createGroup('msi', 0, count);
  return { machine, group, msi: new MsiCapability({ group, nextCapability: 0x58 }) };
}

/** The guest programs the message (to `cpu`, vector BASE_VECTOR) and the mask bits, then enables 2^mme vectors. */
function enableMsi(msi: MsiCapability, mme: number, maskBits = 0, cpu = 0): void {
  const message = msiTo(cpu, BASE_VECTOR);
  msi.writeConfig(Offset.Address, 4, message.addressLow);
  msi.writeConfig(Offset.UpperAddress, 4, message.addressHigh);
  msi.writeConfig(Offset.Data, 2, message.data);
  msi.writeConfig(Offset.MaskBits, 4, maskBits);
  msi.writeConfig(Offset.Control, 2, MSI_ENABLE | (mme << MSI_MME_SHIFT));
}

describe('MsiCapability: the guest\'s registers', () => {
  test('header: ID 0x05, next pointer, MMC = 4 vectors, 64-bit and per-vector masking capable; MME and Enable as written', () => {
    const { msi } = makeMsiRig();
    assert.equal(msi.readConfig(0, 1), MSI_CAPABILITY_ID);
    assert.equal(msi.readConfig(1, 1), 0x58);
    assert.equal(msi.readConfig(2, 2), CAPABLE_4);
    msi.writeConfig(Offset.Control, 2, MSI_ENABLE | (2 << MSI_MME_SHIFT));
    assert.equal(msi.readConfig(2, 2), MSI_ENABLE | (2 << MSI_MME_SHIFT) | CAPABLE_4);
    assert.equal(msi.enabledVectorCount(), 4);
    assert.equal(msi.enabled, true);
  });

  test('an MME above MMC is taken as MMC and counted; reserved bits are not stored; odd accesses dropped', () => {
    const { msi } = makeMsiRig();
    msi.writeConfig(Offset.Control, 2, 5 << MSI_MME_SHIFT);
    assert.equal(msi.enabledVectorCount(), 4);
    msi.writeConfig(Offset.Address, 4, 0xfee00003);
    assert.equal(msi.readConfig(Offset.Address, 4), 0xfee00000);
    msi.writeConfig(Offset.MaskBits, 4, 0xffffffff);
    assert.equal(msi.readConfig(Offset.MaskBits, 4), 0xf, 'mask bits past the 4 vectors are reserved');
    msi.writeConfig(Offset.PendingBits, 4, 1);
    assert.equal(msi.readConfig(3, 2), 0xffff, 'unaligned: dropped, all ones');
    msi.writeConfig(24, 4, 1);
    assert.deepEqual(msi.counters(), { ignoredAccesses: 2, reservedBitWrites: 3, readOnlyWrites: 1, gsiExhausted: 0 });
  });

  test('the constructor refuses what is not a new MSI group of a power of two up to 32 vectors (EINVAL)', () => {
    const machine = makeDeviceMachine();
    assert.throws(() => new MsiCapability({ group: machine.manager.createGroup('legacy', 5, 1) }), rejectsWith('EINVAL'));
    assert.throws(() => new MsiCapability({ group: machine.manager.createGroup('msi', 0, 3) }), rejectsWith('EINVAL'));
    assert.throws(() => new MsiCapability({ group: machine.manager.createGroup('msi', 10, 64) }), rejectsWith('EINVAL'));
    const enabled = machine.manager.createGroup('msi', 100, 1);
    enabled.enable([msiTo(0, 0x40)]);
    assert.throws(() => new MsiCapability({ group: enabled }), rejectsWith('EINVAL'));
  });
});

describe('MsiCapability over an emulated device: delivery', () => {
  test('each vector sends the Data with its low MME bits replaced by its number; nothing before Enable', () => {
    const rig = makeMsiRig();
    for (let vector = 0; vector < 4; vector++) rig.group.trigger(vector);
    assert.deepEqual(takenVectors(rig.machine), [], 'held while MSI is disabled');
    assert.equal(rig.msi.readConfig(Offset.PendingBits, 4), 0xf);
    enableMsi(rig.msi, 2);
    assert.deepEqual(takenVectors(rig.machine), [0x60, 0x61, 0x62, 0x63], 'each held interrupt once, at enable');
    assert.equal(rig.msi.readConfig(Offset.PendingBits, 4), 0);
    rig.group.trigger(2);
    assert.deepEqual(takenVectors(rig.machine), [0x62]);
  });

  test('Multiple Message Enable 1: vectors 2 and 3 stay masked for delivery, their interrupts pending; no GSI for them', () => {
    const rig = makeMsiRig();
    enableMsi(rig.msi, 1);
    assert.equal(rig.machine.allocator.allocatedCount, 2);
    for (let vector = 0; vector < 4; vector++) rig.group.trigger(vector);
    assert.deepEqual(takenVectors(rig.machine), [0x60, 0x61]);
    assert.equal(rig.msi.readConfig(Offset.PendingBits, 4), 0b1100);
  });

  test('per-vector masking: a masked vector sets its Pending Bit, coalesces, and is sent once at unmask', () => {
    const rig = makeMsiRig();
    enableMsi(rig.msi, 2, 0b0100);
    rig.group.trigger(2);
    rig.group.trigger(2);
    rig.group.trigger(1);
    assert.deepEqual(takenVectors(rig.machine), [0x61]);
    assert.equal(rig.msi.readConfig(Offset.PendingBits, 4), 0b0100);
    rig.msi.writeConfig(Offset.MaskBits, 1, 0);
    assert.deepEqual(takenVectors(rig.machine), [0x62]);
    assert.equal(rig.msi.readConfig(Offset.PendingBits, 4), 0);
  });

  test('reprogramming the address and data while enabled moves every vector', () => {
    const rig = makeMsiRig();
    enableMsi(rig.msi, 2);
    const message = msiTo(1, 0x70);
    rig.msi.writeConfig(Offset.Address, 4, message.addressLow);
    rig.msi.writeConfig(Offset.Data, 2, message.data);
    rig.group.trigger(0);
    rig.group.trigger(3);
    assert.deepEqual(takenVectors(rig.machine), [0x70, 0x73]);
    assert.deepEqual([...(rig.machine.vcpus[1]?.taken ?? [])].sort((a, b) => a - b), [0x70, 0x73], 'on vCPU 1');
  });

  test('disable keeps what is pending and gives the GSIs back; the next enable delivers it once', () => {
    const rig = makeMsiRig();
    enableMsi(rig.msi, 2);
    rig.msi.writeConfig(Offset.Control, 2, 0);
    assert.equal(rig.machine.allocator.allocatedCount, 0);
    rig.group.trigger(1);
    assert.deepEqual(takenVectors(rig.machine), []);
    enableMsi(rig.msi, 2);
    assert.deepEqual(takenVectors(rig.machine), [0x61]);
  });

  test('a spent GSI budget holds back only the vectors it cannot serve, counted; they go live when next made deliverable', () => {
    const rig = makeMsiRig(4, { gsiBudget: 2 });
    enableMsi(rig.msi, 2);
    assert.equal(rig.msi.counters().gsiExhausted, 2);
    for (let vector = 0; vector < 4; vector++) rig.group.trigger(vector);
    assert.deepEqual(takenVectors(rig.machine), [0x60, 0x61]);
    assert.equal(rig.msi.readConfig(Offset.PendingBits, 4), 0b1100, 'held, not lost');
    rig.msi.writeConfig(Offset.Control, 2, 0);
    rig.msi.writeConfig(Offset.MaskBits, 4, 0b0011);
    rig.msi.writeConfig(Offset.Control, 2, MSI_ENABLE | (2 << MSI_MME_SHIFT));
    assert.deepEqual(takenVectors(rig.machine), [0x62, 0x63], 'the GSIs the disable gave back serve vectors 2 and 3, and their held interrupts are sent');
    assert.equal(rig.msi.readConfig(Offset.PendingBits, 4), 0b0000);
  });
});
