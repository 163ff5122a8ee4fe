import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MSIX_CAPABILITY_ID, MSIX_ENABLE, MSIX_FUNCTION_MASK, MsixCapability } from './msix-capability.ts';
import { makeMsixRig, type MsixRig } from './msix-test-support.ts';
import { makeDeviceMachine, msiTo, runGuests, serviceSignalledEvents, takenVectors } from './device-test-support.ts';
import { rejectsWith } from '../testing/irq-chip-error.ts';

const VECTOR_CONTROL = 12;

/** A rig brought up as Linux does: vector v → vCPU v % 2, guest vector 0x40 + v, all unmasked. */
function broughtUp(count: number): MsixRig {
  const rig = makeMsixRig(count);
  rig.guest.bringUp(Array.from({ length: count }, (_, vector) => [vector % 2, 0x40 + vector] as const));
  return rig;
}

describe('MSI-X capability structure (configuration space)', () => {
  test('header: ID 0x11, next pointer, Message Control with table size N−1; table and PBA location registers', () => {
    const machine = makeDeviceMachine();
    const group = machine.manager.createGroup('msi', 0, 64);
    const msix = new MsixCapability({ group, table: { bar: 2, offset: 0x1000 }, pba: { bar: 4, offset: 0x800 }, nextCapability: 0x60 });
    assert.equal(msix.readConfig(0, 4), (MSIX_CAPABILITY_ID | (0x60 << 8) | (63 << 16)) >>> 0);
    assert.equal(msix.readConfig(0, 1), MSIX_CAPABILITY_ID);
    assert.equal(msix.readConfig(2, 2), 63);
    assert.equal(msix.readConfig(4, 4), 0x1000 | 2);
    assert.equal(msix.readConfig(8, 4), 0x800 | 4);
    assert.equal(msix.tableBytes, 64 * 16);
    assert.equal(msix.pbaBytes, 8);
  });

  test('only Enable and Function Mask are writable, by DWORD, WORD or byte; table size, ID and locations are read-only', () => {
    const { msix } = makeMsixRig(8);
    msix.writeConfig(0, 4, 0xffff_ffff);
    assert.equal(msix.readConfig(0, 4), (MSIX_CAPABILITY_ID | ((MSIX_ENABLE | MSIX_FUNCTION_MASK | 7) << 16)) >>> 0);
    assert.equal(msix.counters().reservedBitWrites, 1, 'bits 13:11 were written as ones');
    msix.writeConfig(3, 1, 0x00); // upper byte of Message Control
    assert.equal(msix.messageControl(), 7);
    msix.writeConfig(2, 2, MSIX_FUNCTION_MASK);
    assert.equal(msix.messageControl(), MSIX_FUNCTION_MASK | 7);
    msix.writeConfig(4, 4, 0);
    msix.writeConfig(8, 4, 0);
    assert.equal(msix.readConfig(4, 4), 0);
    assert.equal(msix.readConfig(8, 4), 0x800);
  });

  test('misaligned or oversized configuration accesses are ignored and counted', () => {
    const { msix } = makeMsixRig(8);
    msix.writeConfig(1, 2, 0xffff);
    msix.writeConfig(2, 4, 0xffff_ffff);
    msix.writeConfig(12, 1, 0xff);
    assert.equal(msix.messageControl(), 7);
    assert.equal(msix.readConfig(3, 2), 0xffff);
    assert.equal(msix.counters().ignoredAccesses, 4);
  });

  test('the constructor refuses what is not a new MSI group, and bad locations (EINVAL)', () => {
    const machine = makeDeviceMachine();
    const legacy = machine.manager.createGroup('legacy', 5, 1);
    assert.throws(() => new MsixCapability({ group: legacy, table: { bar: 0, offset: 0 }, pba: { bar: 0, offset: 0x800 } }), rejectsWith('EINVAL'));
    const group = machine.manager.createGroup('msi', 0, 4);
    assert.throws(() => new MsixCapability({ group, table: { bar: 6, offset: 0 }, pba: { bar: 0, offset: 0x800 } }), rejectsWith('EINVAL'));
    assert.throws(() => new MsixCapability({ group, table: { bar: 0, offset: 4 }, pba: { bar: 0, offset: 0x800 } }), rejectsWith('EINVAL'));
    group.enable([msiTo(0, 0x40), msiTo(0, 0x41), msiTo(0, 0x42), msiTo(0, 0x43)]);
    assert.throws(() => new MsixCapability({ group, table: { bar: 0, offset: 0 }, pba: { bar: 0, offset: 0x800 } }), rejectsWith('EINVAL'));
  });
});

describe('MSI-X table and PBA: access rules (PCIe §7.7.2)', () => {
  test('entries reset masked with zero message; MSI-X Enable and Function Mask reset clear', () => {
    const { guest, msix } = makeMsixRig(4);
    for (let vector = 0; vector < 4; vector++) {
      assert.equal(guest.readTable(vector * 16, 8), 0n);
      assert.equal(guest.readTable(vector * 16 + 8, 8), 1n << 32n, 'data 0, vector control: masked');
    }
    assert.equal(msix.messageControl(), 3);
  });

  test('aligned DWORD and QWORD accesses read and write the fields; a QWORD is its two DWORDs', () => {
    const { guest } = makeMsixRig(4);
    guest.writeTable(16, 0x0000_0001_fee0_1000n, 8);
    assert.equal(guest.readTable(16), 0xfee0_1000n);
    assert.equal(guest.readTable(20), 1n);
    guest.writeTable(24, 0x0000_0000_0000_4041n, 8);
    assert.equal(guest.readTable(24), 0x4041n);
    assert.equal(guest.readTable(28), 0n, 'the QWORD cleared the mask bit');
  });

  test('byte, word, misaligned and out-of-range table accesses are ignored: reads return all ones, writes change nothing', () => {
    const { guest, msix } = makeMsixRig(2);
    guest.writeTable(0, 0xff, 1);
    guest.writeTable(2, 0xffff, 2);
    guest.writeTable(4, 0xffff_ffff_ffff_ffffn, 8);
    guest.writeTable(32, 0xffff_ffff);
    assert.equal(guest.readTable(0, 8), 0n);
    assert.equal(guest.readTable(1, 1), 0xffn);
    assert.equal(guest.readTable(4, 8), 0xffff_ffff_ffff_ffffn);
    assert.equal(guest.readTable(32), 0xffff_ffffn);
    assert.equal(msix.counters().ignoredAccesses, 7);
  });

  test('reserved bits read 0 and are counted: address bits 1:0, vector control bits 31:1', () => {
    const { guest, msix } = makeMsixRig(2);
    guest.writeTable(0, 0xfee0_0003);
    guest.writeTable(VECTOR_CONTROL, 0xffff_fffe);
    assert.equal(guest.readTable(0), 0xfee0_0000n);
    assert.equal(guest.readTable(VECTOR_CONTROL), 0n);
    assert.equal(msix.counters().reservedBitWrites, 2);
  });

  test('the PBA is read-only: writes are counted and change nothing; bits past the last vector read 0', () => {
    const rig = broughtUp(3);
    rig.guest.setVectorMask(2, true);
    rig.group.trigger(2);
    rig.msix.pbaWrite(0, new Uint8Array(8));
    assert.equal(rig.guest.readPba(), 0b100n);
    assert.equal(rig.guest.readPba(4, 4), 0n);
    assert.equal(rig.msix.counters().readOnlyWrites, 1);
    rig.msix.pbaWrite(1, new Uint8Array(1));
    assert.equal(rig.msix.counters().ignoredAccesses, 1);
  });
});

describe('MSI-X delivery: masks, pending bits, exactly once', () => {
  test('a vector masked by its Mask bit holds triggers in the PBA and delivers once when unmasked', () => {
    const { machine, group, guest } = broughtUp(4);
    guest.setVectorMask(1, true);
    group.trigger(1);
    group.trigger(1);
    assert.deepEqual(takenVectors(machine), []);
    assert.equal(guest.readPba(), 0b10n);
    guest.setVectorMask(1, false);
    assert.deepEqual(takenVectors(machine), [0x41]);
    assert.equal(guest.readPba(), 0n);
  });

  test('the Function Mask masks every vector: pending bits show in the PBA for vector-unmasked vectors, and clear delivers each once', () => {
    const { machine, group, guest } = broughtUp(4);
    guest.setControl(true, true);
    group.trigger(0);
    group.trigger(3);
    assert.deepEqual(takenVectors(machine), []);
    assert.equal(guest.readPba(), 0b1001n, 'function-masked vectors show pending (Dragonball\'s PBA did not)');
    guest.setControl(true, false);
    assert.deepEqual(takenVectors(machine), [0x40, 0x43]);
    assert.equal(guest.readPba(), 0n);
  });

  test('with MSI-X disabled a trigger is held; enabling with the vector unmasked delivers it once', () => {
    const { machine, group, guest } = makeMsixRig(2);
    guest.program(0, 0, 0x40);
    guest.setVectorMask(0, false);
    group.trigger(0);
    assert.equal(guest.readPba(), 1n);
    guest.setControl(true, false);
    assert.deepEqual(takenVectors(machine), [0x40]);
    assert.equal(guest.readPba(), 0n);
  });

  test('disabling MSI-X stops delivery and frees the GSIs; pending bits survive a disable/enable cycle', () => {
    const { machine, group, guest } = broughtUp(2);
    assert.equal(machine.manager.counters().gsisInUse, 2);
    guest.setControl(false, false);
    assert.equal(machine.manager.counters().gsisInUse, 0);
    group.trigger(1);
    assert.deepEqual(takenVectors(machine), []);
    guest.setControl(true, false);
    assert.deepEqual(takenVectors(machine), [0x41]);
  });

  test('Dragonball msix test: function-mask while disabled, mask vector 0, enable, signal its notifier: PBA reads 1, twice', () => {
    const { machine, group, guest } = makeMsixRig(4);
    guest.setControl(false, true);
    assert.equal(guest.readPba(), 0n);
    guest.setVectorMask(0, true);
    assert.equal(guest.readPba(), 0n);
    guest.setControl(true, true);
    group.notifier(0).signal();
    assert.equal(serviceSignalledEvents(machine.chip), 0, 'the VMM never sees it');
    assert.equal(guest.readPba(), 1n);
    assert.equal(guest.readPba(), 1n);
  });

  test('a QWORD write of data then vector control reprograms and unmasks in one access, delivering the pending interrupt to the new target', () => {
    const { machine, group, guest } = broughtUp(2);
    guest.setVectorMask(0, true);
    group.trigger(0);
    const config = msiTo(1, 0x77);
    guest.writeTable(0, (BigInt(config.addressHigh) << 32n) | BigInt(config.addressLow), 8);
    guest.writeTable(8, BigInt(config.data), 8);
    assert.deepEqual(runGuests(machine), [[], [0x77]]);
  });

  test('reprogramming a live vector without masking takes effect for the next interrupt', () => {
    const { machine, group, guest } = broughtUp(2);
    guest.program(1, 0, 0x99);
    group.trigger(1);
    assert.deepEqual(runGuests(machine), [[0x99], []]);
  });

  test('the guest reaches the table and PBA through the MMIO bus (DWORD accesses of a SimVcpu)', () => {
    const { machine, group, msix } = makeMsixRig(2);
    const bar = 0xfebf_0000;
    machine.mmioBus.insert(msix.tableBusDevice(), bar, msix.tableBytes);
    machine.mmioBus.insert(msix.pbaBusDevice(), bar + 0x800, msix.pbaBytes);
    const cpu = machine.vcpus[0]?.bus;
    assert.ok(cpu);
    const config = msiTo(1, 0x55);
    msix.writeConfig(2, 2, MSIX_ENABLE);
    cpu.writeMmio32(bar + 16, config.addressLow);
    cpu.writeMmio32(bar + 24, config.data);
    assert.equal(cpu.readMmio32(bar + 16), config.addressLow);
    group.trigger(1);
    assert.equal(cpu.readMmio32(bar + 0x800), 0b10);
    cpu.writeMmio32(bar + 16 + VECTOR_CONTROL, 0);
    assert.deepEqual(runGuests(machine), [[], [0x55]]);
    cpu.writeMmio32(bar + 0x800, 0xffff_ffff);
    machine.mmioBus.write(bar + 16, 8, 0, { vcpuIndex: 0 });
    assert.equal(msix.counters().readOnlyWrites, 1);
    assert.equal(msix.counters().ignoredAccesses, 1, 'an 8-byte bus write carries only its low half: ignored');
    assert.equal(cpu.readMmio32(bar + 16), config.addressLow);
  });

  test('an aligned 8-byte bus read is a valid QWORD access (its low half arrives); byte and word bus reads are ignored', () => {
    const { machine, msix } = makeMsixRig(2);
    const bar = 0xfebf_0000;
    machine.mmioBus.insert(msix.tableBusDevice(), bar, msix.tableBytes);
    machine.mmioBus.insert(msix.pbaBusDevice(), bar + 0x800, msix.pbaBytes);
    const accessor = { vcpuIndex: 0 };
    machine.mmioBus.write(bar + 16, 4, 0xfee0_1000, accessor);
    assert.equal(machine.mmioBus.read(bar + 16, 8, accessor), 0xfee0_1000);
    assert.equal(machine.mmioBus.read(bar + 0x800, 8, accessor), 0);
    assert.equal(msix.counters().ignoredAccesses, 0);
    assert.equal(machine.mmioBus.read(bar + 16, 1, accessor), 0xff);
    assert.equal(machine.mmioBus.read(bar + 0x800, 2, accessor), 0xffff);
    assert.equal(msix.counters().ignoredAccesses, 2);
  });
});

describe('MSI-X routing work: lazy and batched', () => {
  test('enabling MSI-X with every vector masked takes no GSI and pushes no route', () => {
    const { machine, guest } = makeMsixRig(2048, { gsiBudget: 4096 });
    const pushes = machine.manager.counters().routePushes;
    guest.setControl(true, false);
    assert.equal(machine.manager.counters().gsisInUse, 0);
    assert.equal(machine.manager.counters().routePushes, pushes);
    guest.program(100, 0, 0x60);
    guest.setVectorMask(100, false);
    assert.equal(machine.manager.counters().gsisInUse, 1);
    assert.equal(machine.manager.counters().routePushes, pushes + 1);
  });

  test('clearing the Function Mask over 32 unmasked vectors is one route push; setting it again is none', () => {
    const { machine, guest } = makeMsixRig(32);
    guest.setControl(true, true);
    for (let vector = 0; vector < 32; vector++) {
      guest.program(vector, 0, 0x40 + vector);
      guest.setVectorMask(vector, false);
    }
    const pushes = machine.manager.counters().routePushes;
    assert.equal(machine.manager.counters().gsisInUse, 0, 'function-masked vectors take nothing yet');
    guest.setControl(true, false);
    assert.equal(machine.manager.counters().routePushes, pushes + 1);
    assert.equal(machine.manager.counters().gsisInUse, 32);
    guest.setControl(true, true);
    guest.setControl(true, false);
    assert.equal(machine.manager.counters().routePushes, pushes + 1, 'masking keeps the routes; unmasking finds them in force');
  });

  test('an unmask past the device budget leaves the vector held (counted); it is served at a later unmask', () => {
    const { machine, group, guest, msix } = makeMsixRig(4, { gsiBudget: 2 });
    guest.bringUp([
      [0, 0x40],
      [0, 0x41],
      [0, 0x42],
      [0, 0x43],
    ]);
    assert.equal(msix.counters().gsiExhausted, 2);
    for (let vector = 0; vector < 4; vector++) group.trigger(vector);
    assert.deepEqual(takenVectors(machine), [0x40, 0x41]);
    assert.equal(guest.readPba(), 0b1100n, 'held interrupts stay visible in the PBA');
    guest.setControl(false, false); // frees the GSIs
    guest.setVectorMask(0, true);
    guest.setVectorMask(1, true);
    guest.setControl(true, false);
    assert.deepEqual(takenVectors(machine), [0x42, 0x43], 'served at last, each held interrupt once');
    assert.equal(msix.counters().gsiExhausted, 2);
    assert.equal(guest.readPba(), 0n);
  });
});
