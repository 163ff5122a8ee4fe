/**
 * The host bridge: configuration mechanism #1 (PCI 3.0 §3.2.2.3.2), enumeration of bus 0, BAR
 * sizing, firmware assignment and BAR decoding on the MMIO bus (moves, decode off, the window,
 * overlaps).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Bus, MMIO_ADDRESS_LIMIT, type BusDevice } from '../../../chip/bus.ts';
import { rejectsWith } from '../../../testing/irq-chip-error.ts';
import { Gsi, PCI_MMIO_WINDOW, Port } from '../../machine-layout.ts';
import { PCI_SECOND_TEST_DEVICE_SLOT, PCI_TEST_DEVICE_SLOT } from './pci-bus.ts';
import { PciConfigHeader } from './pci-config-header.ts';
import { I440FX_IDENTITY, PciHostBridge } from './pci-host-bridge.ts';
import { PciCommand, PciConfigOffset, barOffset, type PciFunction } from './pci-function.ts';
import { PCI_TEST_DEVICE_ID_VALUE, PCI_TEST_DEVICE_IDENTITY, PCI_TEST_MSIX_BAR, PCI_TEST_REGISTERS_BAR, PciTestRegister } from './pci-test-device.ts';
import { PciGuest, makePciMachine } from './pci-test-support.ts';

const GUEST = { vcpuIndex: 0 } as const;
const CONFIG_DATA = Port.PciConfig + 4;
const WINDOW_END = PCI_MMIO_WINDOW.base + PCI_MMIO_WINDOW.bytes;

describe('PCI host bridge: CONFIG_ADDRESS and CONFIG_DATA', () => {
  test('CONFIG_ADDRESS holds a DWORD written at 0xcf8; its reserved bits 30:24 and 1:0 read 0', (t) => {
    const { guest } = makePciMachine(t);
    guest.outPort(Port.PciConfig, 4, 0x80001234);
    assert.equal(guest.inPort(Port.PciConfig, 4), 0x80001234);
    guest.outPort(Port.PciConfig, 4, 0xffffffff);
    assert.equal(guest.inPort(Port.PciConfig, 4), 0x80fffffc);
  });

  test('non-DWORD accesses to 0xcf8-0xcfb leave CONFIG_ADDRESS alone and read all ones, counted', (t) => {
    const { guest, pci } = makePciMachine(t);
    guest.outPort(Port.PciConfig, 4, 0x80000000);
    guest.outPort(Port.PciConfig, 1, 0x12);
    guest.outPort(Port.PciConfig + 2, 2, 0x3456);
    guest.outPort(Port.PciConfig + 1, 1, 0x78);
    assert.equal(guest.inPort(Port.PciConfig, 4), 0x80000000);
    assert.equal(guest.inPort(Port.PciConfig, 2), 0xffff);
    assert.equal(guest.inPort(Port.PciConfig + 3, 1), 0xff);
    assert.equal(pci.bridge.counters().nonDwordAddressAccesses, 5);
  });

  test('CONFIG_DATA\'s byte lanes: address bits 1:0 pick the bytes of the selected DWORD', (t) => {
    const { guest } = makePciMachine(t);
    guest.outPort(Port.PciConfig, 4, PciGuest.address(0, PciConfigOffset.VendorId));
    assert.equal(guest.inPort(CONFIG_DATA, 4), (I440FX_IDENTITY.deviceId << 16) | I440FX_IDENTITY.vendorId);
    assert.equal(guest.inPort(CONFIG_DATA + 2, 2), I440FX_IDENTITY.deviceId);
    assert.equal(guest.inPort(CONFIG_DATA + 1, 1), I440FX_IDENTITY.vendorId >> 8);
    guest.outPort(Port.PciConfig, 4, PciGuest.address(PCI_TEST_DEVICE_SLOT, PciConfigOffset.InterruptLine));
    guest.outPort(CONFIG_DATA, 1, 0x0a);
    assert.equal(guest.inPort(CONFIG_DATA + 1, 1), 1, 'Interrupt Pin: INTA#');
    assert.equal(guest.inPort(CONFIG_DATA, 1), 0x0a, 'Interrupt Line as written');
  });

  test('with the enable bit clear, or running past 0xcff, data accesses read all ones and write nothing', (t) => {
    const { guest, pci } = makePciMachine(t);
    guest.outPort(Port.PciConfig, 4, PciGuest.address(PCI_TEST_DEVICE_SLOT, PciConfigOffset.InterruptLine) & 0x7fffffff);
    assert.equal(guest.inPort(CONFIG_DATA, 4), 0xffffffff);
    guest.outPort(CONFIG_DATA, 1, 0x05);
    assert.equal(guest.testRead(PciConfigOffset.InterruptLine, 1), Gsi.PciTestDeviceIntx, 'unchanged');
    guest.outPort(Port.PciConfig, 4, PciGuest.address(PCI_TEST_DEVICE_SLOT, PciConfigOffset.VendorId));
    assert.equal(guest.inPort(CONFIG_DATA + 3, 2), 0xffff);
    assert.equal(guest.inPort(CONFIG_DATA + 2, 4), 0xffffffff);
    assert.deepEqual([pci.bridge.counters().disabledDataAccesses, pci.bridge.counters().straddlingDataAccesses], [2, 2]);
  });
});

describe('PCI host bridge: enumeration of bus 0', () => {
  test('device 0 is the i440FX host bridge, as QEMU -machine pc: 8086:1237 revision 2, class 060000, header type 0', (t) => {
    const { guest } = makePciMachine(t);
    assert.equal(guest.configRead(0, PciConfigOffset.VendorId, 2), 0x8086);
    assert.equal(guest.configRead(0, PciConfigOffset.DeviceId, 2), 0x1237);
    assert.equal(guest.configRead(0, PciConfigOffset.RevisionId, 4), 0x06000002);
    assert.equal(guest.configRead(0, PciConfigOffset.HeaderType, 1), 0);
    assert.equal(guest.configRead(0, PciConfigOffset.SubsystemVendorId, 4), 0x11001af4);
    assert.equal(guest.configRead(0, PciConfigOffset.InterruptPin, 1), 0, 'no interrupt pin');
  });

  test('a scan finds exactly the host bridge and the two test functions; every other slot, function and bus aborts with all ones', (t) => {
    const { guest, pci } = makePciMachine(t);
    const found: string[] = [];
    for (let device = 0; device < 32; device++) {
      for (let fn = 0; fn < 8; fn++) {
        const ids = guest.configRead(device, 0, 4, fn);
        if (ids !== 0xffffffff) found.push(`${device}.${fn} ${ids.toString(16)}`);
      }
    }
    const testIds = ((PCI_TEST_DEVICE_IDENTITY.deviceId << 16) | PCI_TEST_DEVICE_IDENTITY.vendorId).toString(16);
    assert.deepEqual(found, ['0.0 12378086', `${PCI_TEST_DEVICE_SLOT}.0 ${testIds}`, `${PCI_SECOND_TEST_DEVICE_SLOT}.0 ${testIds}`]);
    assert.equal(pci.bridge.counters().masterAborts, 32 * 8 - 3);
    guest.outPort(Port.PciConfig, 4, PciGuest.address(0, 0, 0, 1));
    assert.equal(guest.inPort(CONFIG_DATA, 4), 0xffffffff, 'bus 1 does not exist');
  });

  test('attach refuses a device number out of range (EINVAL), a taken one (EEXIST), and an INTx GSI Interrupt Line cannot hold (EINVAL)', (t) => {
    const { pci } = makePciMachine(t);
    const fn = plainFunction('extra', 0x1000);
    assert.throws(() => { pci.bridge.attach(32, fn); }, rejectsWith('EINVAL'));
    assert.throws(() => { pci.bridge.attach(0, fn); }, rejectsWith('EEXIST'));
    assert.throws(() => { pci.bridge.attach(5, { ...fn, intxGsi: 0xff }); }, rejectsWith('EINVAL'));
  });
});

describe('PCI host bridge: BARs', () => {
  test('sizing: all ones written to a 4 KiB memory BAR reads back 0xfffff000; unimplemented BARs and the ROM BAR read 0', (t) => {
    const { guest } = makePciMachine(t);
    guest.setCommand(PciCommand.MemorySpace, false);
    const original = guest.bar(PCI_TEST_REGISTERS_BAR);
    guest.testWrite(barOffset(PCI_TEST_REGISTERS_BAR), 4, 0xffffffff);
    assert.equal(guest.bar(PCI_TEST_REGISTERS_BAR), 0xfffff000, 'size 4 KiB; 32-bit, non-prefetchable memory');
    for (const offset of [barOffset(2), barOffset(5), PciConfigOffset.ExpansionRom]) {
      guest.testWrite(offset, 4, 0xffffffff);
      assert.equal(guest.testRead(offset), 0, `offset 0x${offset.toString(16)}`);
    }
    guest.testWrite(barOffset(PCI_TEST_REGISTERS_BAR), 4, original);
    assert.equal(guest.bar(PCI_TEST_REGISTERS_BAR), original);
  });

  test('firmware assignment: naturally aligned BARs in the PCI window, Interrupt Line = the GSI of INTA#, memory decode on, bus master off', (t) => {
    const { guest, pci } = makePciMachine(t);
    const bars = [guest.bar(PCI_TEST_REGISTERS_BAR), guest.bar(PCI_TEST_MSIX_BAR)];
    for (const address of bars) {
      assert.ok(address >= PCI_MMIO_WINDOW.base && address + 0x1000 <= WINDOW_END, `0x${address.toString(16)} in the window`);
      assert.equal(address % 0x1000, 0);
    }
    assert.notEqual(bars[0], bars[1]);
    assert.equal(guest.testRead(PciConfigOffset.InterruptLine, 1), Gsi.PciTestDeviceIntx);
    assert.equal(guest.testRead(PciConfigOffset.Command, 2), PciCommand.MemorySpace);
    assert.equal(pci.bridge.decodedAddress(pci.testDevice, PCI_TEST_REGISTERS_BAR), bars[0]);
    assert.equal(guest.readRegister(PciTestRegister.Id), PCI_TEST_DEVICE_ID_VALUE, 'BAR 0 answers at its address');
  });

  test('moving a BAR moves its range; Memory Space off takes every BAR off the bus, on puts them back', (t) => {
    const machine = makePciMachine(t);
    const { guest, mmioBus } = machine;
    const before = guest.bar(PCI_TEST_REGISTERS_BAR);
    const moved = PCI_MMIO_WINDOW.base + 0x100000;
    guest.testWrite(barOffset(PCI_TEST_REGISTERS_BAR), 4, moved);
    assert.equal(mmioBus.read(before, 4, GUEST), 0xffffffff, 'the old range is unclaimed');
    assert.equal(mmioBus.read(moved, 4, GUEST), PCI_TEST_DEVICE_ID_VALUE);
    guest.setCommand(PciCommand.MemorySpace, false);
    assert.equal(mmioBus.read(moved, 4, GUEST), 0xffffffff);
    assert.equal(mmioBus.resolve(guest.bar(PCI_TEST_MSIX_BAR)), undefined, 'the MSI-X table is off the bus too');
    guest.setCommand(PciCommand.MemorySpace, true);
    assert.equal(mmioBus.read(moved, 4, GUEST), PCI_TEST_DEVICE_ID_VALUE);
  });

  test('a BAR outside the window or over another BAR is not decoded, counted once per address; it decodes once given a free address', (t) => {
    const machine = makePciMachine(t);
    const { guest, pci, mmioBus } = machine;
    const registersBar = barOffset(PCI_TEST_REGISTERS_BAR);
    const msixAddress = guest.bar(PCI_TEST_MSIX_BAR);
    guest.testWrite(registersBar, 4, 0x1000); // RAM
    guest.testWrite(registersBar, 4, 0x1000); // the same address again
    assert.equal(pci.bridge.decodedAddress(pci.testDevice, PCI_TEST_REGISTERS_BAR), undefined);
    assert.equal(mmioBus.read(0x1000, 4, GUEST), 0xffffffff);
    guest.testWrite(registersBar, 4, WINDOW_END - 0x1000 + 0x1000); // just past the window
    guest.testWrite(registersBar, 4, msixAddress);
    assert.equal(pci.bridge.decodedAddress(pci.testDevice, PCI_TEST_REGISTERS_BAR), undefined, 'the MSI-X BAR keeps its place');
    assert.equal(pci.bridge.decodedAddress(pci.testDevice, PCI_TEST_MSIX_BAR), msixAddress);
    assert.deepEqual([pci.bridge.counters().barsOutsideWindow, pci.bridge.counters().barsOverlapping], [2, 1]);
    guest.testWrite(barOffset(PCI_TEST_MSIX_BAR), 4, PCI_MMIO_WINDOW.base + 0x200000);
    assert.equal(pci.bridge.decodedAddress(pci.testDevice, PCI_TEST_REGISTERS_BAR), msixAddress, 'the blocker moved away');
    assert.equal(guest.readRegister(PciTestRegister.Id), PCI_TEST_DEVICE_ID_VALUE);
  });

  test('a BAR over a device that is not PCI is not decoded, and nothing of it is left on the bus', () => {
    const mmio = new Bus('mmio', MMIO_ADDRESS_LIMIT);
    const bridge = new PciHostBridge({ mmio, window: PCI_MMIO_WINDOW });
    const fn = plainFunction('two-regions', 0x2000, [0, 0x1000]);
    bridge.attach(1, fn);
    const squatter: BusDevice = { busName: 'squatter', read: () => 0, write: () => undefined };
    mmio.insert(squatter, PCI_MMIO_WINDOW.base + 0x1000, 0x10);
    bridge.assignResources();
    assert.equal(bridge.decodedAddress(fn, 0), undefined);
    assert.equal(bridge.counters().barsOverlapping, 1);
    assert.equal(mmio.resolve(PCI_MMIO_WINDOW.base), undefined, 'the first region was taken back');
  });

  test('assignment places the largest BAR first, each naturally aligned', () => {
    const mmio = new Bus('mmio', MMIO_ADDRESS_LIMIT);
    const bridge = new PciHostBridge({ mmio, window: PCI_MMIO_WINDOW });
    const small = plainFunction('small', 0x1000);
    const large = plainFunction('large', 0x100000);
    bridge.attach(1, small);
    bridge.attach(2, large);
    bridge.assignResources();
    assert.equal(bridge.decodedAddress(large, 0), PCI_MMIO_WINDOW.base);
    assert.equal(bridge.decodedAddress(small, 0), PCI_MMIO_WINDOW.base + 0x100000);
  });

  test('BARs that do not fit in the window are a configuration error (ENOSPC)', () => {
    const bridge = new PciHostBridge({ mmio: new Bus('mmio', MMIO_ADDRESS_LIMIT), window: { base: 0xe0000000, bytes: 0x1000 } });
    bridge.attach(1, plainFunction('a', 0x1000));
    bridge.attach(2, plainFunction('b', 0x1000));
    assert.throws(() => { bridge.assignResources(); }, rejectsWith('ENOSPC'));
  });
});

/** A function with one memory BAR 0 of `bytes` whose regions (of 16 bytes each) start at `regionOffsets`. */
function plainFunction(name: string, bytes: number, regionOffsets: readonly number[] = [0]): PciFunction {
  const device: BusDevice = { busName: name, read: () => 0, write: () => undefined };
  const memoryBars = [{ index: 0, bytes, regions: regionOffsets.map((offset) => ({ offset, bytes: 0x10, device })) }];
  const header = new PciConfigHeader({ identity: { vendorId: 0x1af4, deviceId: 0x10ff, revisionId: 0, classCode: 0xff0000 }, commandBits: PciCommand.MemorySpace, memoryBars });
  return {
    name,
    memoryBars,
    readConfig: (offset, size) => header.read(offset, size),
    writeConfig: (offset, size, value) => {
      header.write(offset, size, value);
    },
  };
}
