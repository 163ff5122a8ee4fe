/**
 * `createPciBus`: what the machine gets, and that closing it leaves the buses and the chip as they were.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { makeMachine } from '../../../chip/chip-test-support.ts';
import { rejectsWith } from '../../../testing/irq-chip-error.ts';
import { Gsi, PCI_MMIO_WINDOW, Port } from '../../machine-layout.ts';
import { PCI_TEST_DEVICE_SLOT, createPciBus } from './pci-bus.ts';
import { PCI_TEST_MSIX_BAR, PCI_TEST_REGISTERS_BAR } from './pci-test-device.ts';

describe('createPciBus', () => {
  test('the bridge answers at 0xcf8-0xcff, the test functions at devices 3 and 4 with their BARs decoded; close takes it all back', async () => {
    const machine = makeMachine();
    const pci = createPciBus({ io: machine.ioBus, mmio: machine.mmioBus, chip: machine.chip, gsis: machine.allocator });
    assert.equal(machine.ioBus.resolve(Port.PciConfig)?.device, pci.bridge);
    assert.equal(machine.ioBus.resolve(Port.PciConfig + Port.PciConfigBytes - 1)?.device, pci.bridge);
    assert.equal(pci.testDevices.length, 2);
    assert.equal(pci.testDevices[0], pci.testDevice);
    const bars = pci.testDevices.flatMap((device) => [PCI_TEST_REGISTERS_BAR, PCI_TEST_MSIX_BAR].map((index) => pci.bridge.decodedAddress(device, index)));
    for (const address of bars) assert.ok(address !== undefined && address >= PCI_MMIO_WINDOW.base);
    assert.equal(new Set(bars).size, bars.length, 'every BAR has its own address');
    for (const device of pci.testDevices) assert.equal(device.intxGsi, Gsi.PciTestDeviceIntx);
    assert.equal(machine.chip.irqEventTokens().length, 2, 'the level event of each function\'s INTA#');
    await pci.close();
    assert.equal(machine.ioBus.resolve(Port.PciConfig), undefined);
    for (const address of bars) assert.equal(machine.mmioBus.resolve(address ?? 0), undefined);
    assert.equal(machine.chip.irqEventTokens().length, 0);
    assert.equal(PCI_TEST_DEVICE_SLOT, 3);
  });

  test('ports already taken: EEXIST, and nothing is registered with the chip', () => {
    const machine = makeMachine();
    const first = createPciBus({ io: machine.ioBus, mmio: machine.mmioBus, chip: machine.chip, gsis: machine.allocator });
    assert.throws(() => createPciBus({ io: machine.ioBus, mmio: machine.mmioBus, chip: machine.chip, gsis: machine.allocator }), rejectsWith('EEXIST'));
    assert.equal(machine.chip.irqEventTokens().length, 2, 'only the first bus\'s two functions');
    return first.close();
  });
});
