/**
 * The PCI test device on the userspace chip, driven by a guest on SimVcpus through configuration
 * cycles and its BARs: its registers, RAISE through MSI and MSI-X (masking, Pending Bits and the
 * PBA, function mask, reprogramming), INTx with Interrupt Disable and the MSI enables, and the
 * level work with resample: one interrupt per unit of work.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { programIoapicPin } from '../../../chip/chip-test-support.ts';
import type { SimInterruptHandler } from '../../../chip/sim-vcpu.ts';
import { msiTo } from '../../../device/device-test-support.ts';
import { MSI_ENABLE, MSI_MME_SHIFT } from '../../../device/msi-capability.ts';
import { MSIX_ENABLE, MSIX_FUNCTION_MASK, MSIX_TABLE_ENTRY_BYTES, MsixEntryField } from '../../../device/msix-capability.ts';
import { Gsi } from '../../machine-layout.ts';
import { PciCommand, PciConfigOffset, PciStatus } from './pci-function.ts';
import {
  PCI_TEST_DEVICE_COUNTER_NAMES,
  PCI_TEST_DEVICE_ID_VALUE,
  PCI_TEST_MSIX_OFFSET,
  PCI_TEST_MSIX_PBA_OFFSET,
  PCI_TEST_MSI_OFFSET,
  PciTestRegister,
  type PciTestDeviceCounterName,
} from './pci-test-device.ts';
import { INTX_VECTOR, deliver, makePciMachine, routeIntx, settle, type PciMachine } from './pci-test-support.ts';

/** MSI capability registers, from the capability's start (64-bit, per-vector masking layout). */
const Msi = { Control: 2, Address: 4, UpperAddress: 8, Data: 12, MaskBits: 16, PendingBits: 20 } as const;
const MSI_BASE_VECTOR = 0x60;
const MSIX_BASE_VECTOR = 0x50;
const MSIX_VECTORS = 8;

function counterRegister(name: PciTestDeviceCounterName): number {
  return PciTestRegister.FirstCounter + 4 * PCI_TEST_DEVICE_COUNTER_NAMES.indexOf(name);
}

/** The guest enables MSI with 2^mme vectors from MSI_BASE_VECTOR to `cpu`, with `maskBits`. */
function enableMsi(machine: PciMachine, mme: number, maskBits = 0, cpu = 0): void {
  const { guest } = machine;
  const message = msiTo(cpu, MSI_BASE_VECTOR);
  guest.testWrite(PCI_TEST_MSI_OFFSET + Msi.Address, 4, message.addressLow);
  guest.testWrite(PCI_TEST_MSI_OFFSET + Msi.UpperAddress, 4, message.addressHigh);
  guest.testWrite(PCI_TEST_MSI_OFFSET + Msi.Data, 2, message.data);
  guest.testWrite(PCI_TEST_MSI_OFFSET + Msi.MaskBits, 4, maskBits);
  guest.testWrite(PCI_TEST_MSI_OFFSET + Msi.Control, 2, MSI_ENABLE | (mme << MSI_MME_SHIFT));
}

function setMsixControl(machine: PciMachine, bits: number): void {
  machine.guest.testWrite(PCI_TEST_MSIX_OFFSET + 2, 2, bits);
}

/** Entry `entry` sends `vector` to `cpu`; its mask bit as given. */
function programMsixEntry(machine: PciMachine, entry: number, cpu: number, vector: number, masked = false): void {
  const message = msiTo(cpu, vector);
  const base = entry * MSIX_TABLE_ENTRY_BYTES;
  machine.guest.writeMsixBar(base + 4 * MsixEntryField.AddressLow, message.addressLow);
  machine.guest.writeMsixBar(base + 4 * MsixEntryField.AddressHigh, message.addressHigh);
  machine.guest.writeMsixBar(base + 4 * MsixEntryField.Data, message.data);
  setMsixMask(machine, entry, masked);
}

function setMsixMask(machine: PciMachine, entry: number, masked: boolean): void {
  machine.guest.writeMsixBar(entry * MSIX_TABLE_ENTRY_BYTES + 4 * MsixEntryField.VectorControl, masked ? 1 : 0);
}

/** What Linux does: enable with the function masked, program and unmask each entry, clear the function mask; bus master on. */
function bringUpMsix(machine: PciMachine): void {
  machine.guest.enableBusMaster();
  setMsixControl(machine, MSIX_ENABLE | MSIX_FUNCTION_MASK);
  for (let entry = 0; entry < MSIX_VECTORS; entry++) programMsixEntry(machine, entry, 0, MSIX_BASE_VECTOR + entry);
  setMsixControl(machine, MSIX_ENABLE);
}

function pba(machine: PciMachine): number {
  return machine.guest.readMsixBar(PCI_TEST_MSIX_PBA_OFFSET);
}

describe('PCI test device: registers (BAR 0)', () => {
  test('ID reads 0x7e570001; other sizes, offsets and read-only writes are counted, reads all ones', (t) => {
    const machine = makePciMachine(t);
    const { guest, mmioBus } = machine;
    assert.equal(guest.readRegister(PciTestRegister.Id), PCI_TEST_DEVICE_ID_VALUE);
    const bar0 = guest.bar(0);
    assert.equal(mmioBus.read(bar0, 2, { vcpuIndex: 0 }), 0xffff);
    assert.equal(guest.readRegister(0x800), 0xffffffff);
    guest.writeRegister(PciTestRegister.Id, 0);
    guest.writeRegister(counterRegister('msiRaises'), 5);
    assert.equal(guest.readRegister(PciTestRegister.Id), PCI_TEST_DEVICE_ID_VALUE);
    assert.equal(guest.readRegister(counterRegister('unknownRegisterAccesses')), 2);
    assert.equal(guest.readRegister(counterRegister('readOnlyWrites')), 2);
    assert.equal(machine.pci.testDevice.counters().unknownRegisterAccesses, 2);
  });

  test('RAISE is dropped and counted with Bus Master off, with neither MSI nor MSI-X enabled, and for a vector out of range', (t) => {
    const machine = makePciMachine(t);
    const { guest } = machine;
    enableMsi(machine, 1);
    guest.raise(0);
    guest.enableBusMaster();
    guest.testWrite(PCI_TEST_MSI_OFFSET + Msi.Control, 2, 0);
    guest.raise(0);
    enableMsi(machine, 1);
    guest.raise(2);
    assert.deepEqual(deliver(machine), []);
    const counters = machine.pci.testDevice.counters();
    assert.deepEqual([counters.raisesWithoutBusMaster, counters.raisesWithoutMessages, counters.raisesOutOfRange, counters.msiRaises], [1, 1, 1, 0]);
    assert.equal(guest.testRead(PCI_TEST_MSI_OFFSET + Msi.PendingBits), 0, 'nothing held for a dropped raise');
  });
});

describe('PCI test device: MSI', () => {
  test('RAISE v sends the Data with v in its low MME bits', (t) => {
    const machine = makePciMachine(t);
    machine.guest.enableBusMaster();
    enableMsi(machine, 2);
    for (const vector of [3, 0, 2, 1]) machine.guest.raise(vector);
    assert.deepEqual(deliver(machine), [0x60, 0x61, 0x62, 0x63]);
    assert.equal(machine.pci.testDevice.counters().msiRaises, 4);
  });

  test('a masked vector sets its Pending Bit and coalesces; unmasking sends it once', (t) => {
    const machine = makePciMachine(t);
    const { guest } = machine;
    guest.enableBusMaster();
    enableMsi(machine, 2, 0b0010);
    guest.raise(1);
    guest.raise(1);
    assert.deepEqual(deliver(machine), []);
    assert.equal(guest.testRead(PCI_TEST_MSI_OFFSET + Msi.PendingBits), 0b0010);
    guest.testWrite(PCI_TEST_MSI_OFFSET + Msi.MaskBits, 4, 0);
    assert.deepEqual(deliver(machine), [0x61]);
    assert.equal(guest.testRead(PCI_TEST_MSI_OFFSET + Msi.PendingBits), 0);
  });

  test('reprogramming the message moves the vectors to another CPU and vector', (t) => {
    const machine = makePciMachine(t);
    const { guest } = machine;
    guest.enableBusMaster();
    enableMsi(machine, 2);
    const message = msiTo(1, 0x70);
    guest.testWrite(PCI_TEST_MSI_OFFSET + Msi.Address, 4, message.addressLow);
    guest.testWrite(PCI_TEST_MSI_OFFSET + Msi.Data, 2, message.data);
    guest.raise(2);
    assert.deepEqual(deliver(machine), [0x72]);
    assert.deepEqual(machine.vcpus[1]?.taken, [0x72]);
  });
});

describe('PCI test device: MSI-X', () => {
  test('each of the 8 entries delivers its own vector once', (t) => {
    const machine = makePciMachine(t);
    bringUpMsix(machine);
    for (let entry = MSIX_VECTORS - 1; entry >= 0; entry--) machine.guest.raise(entry);
    assert.deepEqual(deliver(machine), Array.from({ length: MSIX_VECTORS }, (_, entry) => MSIX_BASE_VECTOR + entry));
    assert.equal(machine.pci.testDevice.counters().msixRaises, MSIX_VECTORS);
  });

  test('a masked entry sets its PBA bit however often it is raised, and delivers exactly once at unmask', (t) => {
    const machine = makePciMachine(t);
    bringUpMsix(machine);
    setMsixMask(machine, 3, true);
    for (let raise = 0; raise < 3; raise++) machine.guest.raise(3);
    assert.deepEqual(deliver(machine), []);
    assert.equal(pba(machine), 1 << 3);
    setMsixMask(machine, 3, false);
    assert.deepEqual(deliver(machine), [MSIX_BASE_VECTOR + 3]);
    assert.equal(pba(machine), 0);
    assert.deepEqual(deliver(machine), [], 'and not again');
  });

  test('the function mask holds every entry; clearing it delivers each held entry once', (t) => {
    const machine = makePciMachine(t);
    bringUpMsix(machine);
    setMsixControl(machine, MSIX_ENABLE | MSIX_FUNCTION_MASK);
    machine.guest.raise(1);
    machine.guest.raise(6);
    assert.deepEqual(deliver(machine), []);
    assert.equal(pba(machine), (1 << 1) | (1 << 6));
    setMsixControl(machine, MSIX_ENABLE);
    assert.deepEqual(deliver(machine), [MSIX_BASE_VECTOR + 1, MSIX_BASE_VECTOR + 6]);
    assert.equal(pba(machine), 0);
  });

  test('reprogramming an entry\'s vector and destination takes effect at its next raise', (t) => {
    const machine = makePciMachine(t);
    bringUpMsix(machine);
    programMsixEntry(machine, 5, 1, 0x75);
    machine.guest.raise(5);
    assert.deepEqual(deliver(machine), [0x75]);
    assert.deepEqual(machine.vcpus[1]?.taken, [0x75]);
  });

  test('MSI-X wins when the guest enables MSI too; RAISE past 7 is out of range', (t) => {
    const machine = makePciMachine(t);
    bringUpMsix(machine);
    enableMsi(machine, 2);
    machine.guest.raise(2);
    machine.guest.raise(8);
    assert.deepEqual(deliver(machine), [MSIX_BASE_VECTOR + 2]);
    assert.equal(machine.pci.testDevice.counters().raisesOutOfRange, 1);
  });
});

/** Handler: INTX_VECTOR's deasserts INTX (the driver acknowledging the device) when asked; every vector is EOIed. */
function intxMachine(t: TestContext, options: { readonly deassertInHandler: boolean }): PciMachine & { readonly intxRuns: () => number } {
  let runs = 0;
  let bar0 = 0;
  const handler: SimInterruptHandler = (vector, sim) => {
    if (vector === INTX_VECTOR) {
      runs++;
      if (options.deassertInHandler) sim.writeMmio32(bar0 + PciTestRegister.Intx, 0);
    }
    sim.eoiLocalApic();
  };
  const machine = makePciMachine(t, handler);
  bar0 = machine.guest.bar(0);
  routeIntx(machine, Gsi.PciTestDeviceIntx);
  return { ...machine, intxRuns: () => runs };
}

describe('PCI test device: INTx', () => {
  test('INTX = 1 asserts INTA# on its GSI, level: once the handler deasserts it, one interrupt', (t) => {
    const machine = intxMachine(t, { deassertInHandler: true });
    machine.guest.writeRegister(PciTestRegister.Intx, 1);
    assert.equal(machine.guest.testRead(PciConfigOffset.Status, 2) & PciStatus.InterruptStatus, PciStatus.InterruptStatus);
    assert.deepEqual(deliver(machine), [INTX_VECTOR]);
    assert.equal(machine.intxRuns(), 1);
    assert.equal(machine.guest.readRegister(PciTestRegister.Intx), 0);
    assert.equal(machine.guest.testRead(PciConfigOffset.Status, 2) & PciStatus.InterruptStatus, 0);
  });

  test('a line still high at EOI is delivered again (level semantics) until the device deasserts it', (t) => {
    const machine = intxMachine(t, { deassertInHandler: false });
    machine.guest.writeRegister(PciTestRegister.Intx, 1);
    machine.vcpus[0]?.step(machine.chip);
    machine.vcpus[0]?.step(machine.chip);
    assert.equal(machine.intxRuns(), 2);
    machine.guest.writeRegister(PciTestRegister.Intx, 0);
    assert.deepEqual(deliver(machine), [INTX_VECTOR], 'the message the last EOI re-sent is already in the local APIC');
    assert.deepEqual(deliver(machine), []);
  });

  test('Interrupt Disable keeps INTA# off the chip while Status bit 3 still shows it; clearing it delivers', (t) => {
    const machine = intxMachine(t, { deassertInHandler: true });
    const { guest } = machine;
    guest.setCommand(PciCommand.InterruptDisable, true);
    guest.writeRegister(PciTestRegister.Intx, 1);
    assert.deepEqual(deliver(machine), []);
    assert.equal(guest.testRead(PciConfigOffset.Status, 2) & PciStatus.InterruptStatus, PciStatus.InterruptStatus);
    guest.setCommand(PciCommand.InterruptDisable, false);
    assert.deepEqual(deliver(machine), [INTX_VECTOR]);
  });

  test('Interrupt Disable set while asserted lowers the line at once: an IOAPIC pin masked meanwhile delivers nothing when unmasked', (t) => {
    const machine = intxMachine(t, { deassertInHandler: true });
    programIoapicPin(machine, Gsi.PciTestDeviceIntx, { vector: INTX_VECTOR, level: true, masked: true });
    machine.guest.writeRegister(PciTestRegister.Intx, 1);
    assert.equal(machine.chip.ioapic.lineLevel(Gsi.PciTestDeviceIntx), true);
    machine.guest.setCommand(PciCommand.InterruptDisable, true);
    assert.equal(machine.chip.ioapic.lineLevel(Gsi.PciTestDeviceIntx), false);
    routeIntx(machine, Gsi.PciTestDeviceIntx);
    assert.deepEqual(deliver(machine), []);
  });

  test('with MSI or MSI-X enabled the function does not use INTA#', (t) => {
    const machine = intxMachine(t, { deassertInHandler: true });
    enableMsi(machine, 0);
    machine.guest.writeRegister(PciTestRegister.Intx, 1);
    assert.deepEqual(deliver(machine), []);
    machine.guest.testWrite(PCI_TEST_MSI_OFFSET + Msi.Control, 2, 0);
    assert.deepEqual(deliver(machine), [INTX_VECTOR]);
    setMsixControl(machine, MSIX_ENABLE);
    machine.guest.writeRegister(PciTestRegister.Intx, 1);
    assert.deepEqual(deliver(machine), []);
  });
});

/** A guest whose INTx handler completes one unit of level work when there is one, and counts the runs that found none. */
function levelMachine(t: TestContext): PciMachine & { readonly runs: () => { readonly withWork: number; readonly idle: number } } {
  let withWork = 0;
  let idle = 0;
  let bar0 = 0;
  const handler: SimInterruptHandler = (vector, sim) => {
    if (vector === INTX_VECTOR) {
      if (sim.readMmio32(bar0 + PciTestRegister.LevelAck) > 0) {
        sim.writeMmio32(bar0 + PciTestRegister.LevelAck, 1);
        withWork++;
      } else {
        idle++;
      }
    }
    sim.eoiLocalApic();
  };
  const machine = makePciMachine(t, handler);
  bar0 = machine.guest.bar(0);
  routeIntx(machine, Gsi.PciTestDeviceIntx);
  return { ...machine, runs: () => ({ withWork, idle }) };
}

describe('PCI test device: level work with resample', () => {
  test('N units of work are exactly N handler runs: a trigger, then one re-trigger per resample while work remains', async (t) => {
    const machine = levelMachine(t);
    const device = machine.pci.testDevice;
    machine.guest.writeRegister(PciTestRegister.LevelWork, 5);
    assert.equal(machine.guest.readRegister(PciTestRegister.LevelAck), 5);
    const taken = await settle(machine, () => device.levelWorkOutstanding === 0 && device.counters().levelResamples === device.counters().levelTriggers);
    assert.deepEqual(taken, Array<number>(5).fill(INTX_VECTOR));
    assert.deepEqual(machine.runs(), { withWork: 5, idle: 0 });
    const counters = device.counters();
    assert.deepEqual([counters.levelTriggers, counters.levelResamples, counters.levelUnitsQueued, counters.levelUnitsCompleted], [5, 5, 5, 5]);
    assert.equal(machine.guest.readRegister(PciTestRegister.LevelWork), 5, 'units queued since reset');
  });

  test('work queued while the line is held adds no trigger; the resample picks it up', async (t) => {
    const machine = levelMachine(t);
    const device = machine.pci.testDevice;
    machine.guest.writeRegister(PciTestRegister.LevelWork, 1);
    machine.guest.writeRegister(PciTestRegister.LevelWork, 2);
    assert.equal(device.counters().levelTriggers, 1);
    await settle(machine, () => device.levelWorkOutstanding === 0 && device.counters().levelResamples === device.counters().levelTriggers);
    assert.deepEqual(machine.runs(), { withWork: 3, idle: 0 });
  });

  test('Interrupt Disable holds the work back without losing it; clearing it delivers every unit', async (t) => {
    const machine = levelMachine(t);
    const device = machine.pci.testDevice;
    machine.guest.setCommand(PciCommand.InterruptDisable, true);
    machine.guest.writeRegister(PciTestRegister.LevelWork, 2);
    assert.deepEqual(deliver(machine), []);
    assert.equal(device.counters().levelTriggers, 0);
    assert.equal(machine.guest.testRead(PciConfigOffset.Status, 2) & PciStatus.InterruptStatus, PciStatus.InterruptStatus);
    machine.guest.setCommand(PciCommand.InterruptDisable, false);
    await settle(machine, () => device.levelWorkOutstanding === 0 && device.counters().levelResamples === device.counters().levelTriggers);
    assert.deepEqual(machine.runs(), { withWork: 2, idle: 0 });
  });

  test('an acknowledgement with no work and work past the limit are counted, not obeyed', (t) => {
    const machine = makePciMachine(t);
    machine.guest.setCommand(PciCommand.InterruptDisable, true);
    machine.guest.writeRegister(PciTestRegister.LevelAck, 1);
    machine.guest.writeRegister(PciTestRegister.LevelWork, 0xffffffff);
    const counters = machine.pci.testDevice.counters();
    assert.deepEqual([counters.levelAcksWithoutWork, counters.levelUnitsQueued, counters.levelUnitsRefused], [1, 0xffff, 0xffffffff - 0xffff]);
    assert.equal(machine.guest.readRegister(PciTestRegister.LevelAck), 0xffff);
  });
});
