/**
 * The machine's PCI bus, as `irqchip run` builds it: the host bridge at ports 0xcf8–0xcff, the
 * i440FX at device 0, and the test device at device 3 (INTA# on `Gsi.PciTestDeviceIntx`), with
 * BARs assigned and memory decode on as firmware leaves them (machine-layout.ts).
 *
 * Built on the device thread, which is the chip owner's: the test device's interrupt groups and
 * level event register with the chip. The vCPU threads forward port accesses to 0xcf8–0xcff and
 * MMIO accesses inside `PCI_MMIO_WINDOW` to this thread's buses.
 */

import type { Bus } from '../../../chip/bus.ts';
import type { GsiSource } from '../../../device/gsi-budget.ts';
import { Gsi, PCI_MMIO_WINDOW, Port } from '../../machine-layout.ts';
import { PciHostBridge } from './pci-host-bridge.ts';
import { PciTestDevice, type PciTestDeviceChip } from './pci-test-device.ts';

/** The test device's device number on bus 0 (QEMU PC's PIRQ routing wires its INTA# to IRQ 11). */
export const PCI_TEST_DEVICE_SLOT = 3;
/**
 * A second test function, at device 4 (QEMU PC's PIRQ routing also puts its INTA# on IRQ 11): a
 * function with MSI or MSI-X enabled keeps INTA# off (PCI 3.0 §6.8.1.3), so a guest that wants a
 * level source and an MSI-X source at once (the demo) uses one function for each.
 */
export const PCI_SECOND_TEST_DEVICE_SLOT = 4;

export interface PciBusOptions {
  /** The device thread's port bus: the bridge takes `Port.PciConfig`. */
  readonly io: Bus;
  /** The device thread's MMIO bus: BARs are decoded there, inside `PCI_MMIO_WINDOW`. */
  readonly mmio: Bus;
  /** The chip, on its owner's thread (this one). */
  readonly chip: PciTestDeviceChip;
  /** The VM's GSIs: the chip's `IrqAllocator` after `finalizeDevices`. */
  readonly gsis: GsiSource;
}

export interface PciBus {
  readonly bridge: PciHostBridge;
  /** The test function at device 3. */
  readonly testDevice: PciTestDevice;
  /** Every test function: devices 3 and 4. */
  readonly testDevices: readonly PciTestDevice[];
  /** Takes the bridge off the port bus and the BARs off the MMIO bus, and shuts the test device's interrupts down. */
  close(): Promise<void>;
}

/** Builds the bus, places the bridge on `io` (EEXIST if the ports are taken) and assigns resources. */
export function createPciBus(options: PciBusOptions): PciBus {
  const bridge = new PciHostBridge({ mmio: options.mmio, window: PCI_MMIO_WINDOW });
  options.io.insert(bridge, Port.PciConfig, Port.PciConfigBytes);
  const testDevices: PciTestDevice[] = [];
  const closeDevices = async (): Promise<void> => {
    await Promise.all(testDevices.map((device) => device.close()));
  };
  try {
    for (const slot of [PCI_TEST_DEVICE_SLOT, PCI_SECOND_TEST_DEVICE_SLOT]) {
      const device = new PciTestDevice({
        chip: options.chip,
        gsis: options.gsis,
        intxGsi: Gsi.PciTestDeviceIntx,
        ...(slot === PCI_TEST_DEVICE_SLOT ? {} : { device: { id: slot, name: `pci-test-device-${slot}` } }),
      });
      testDevices.push(device);
      bridge.attach(slot, device);
    }
    bridge.assignResources();
  } catch (error) {
    bridge.stopDecoding();
    options.io.remove(Port.PciConfig);
    void closeDevices();
    throw error;
  }
  const [testDevice] = testDevices;
  if (testDevice === undefined) throw new Error('unreachable: the bus has its test functions');
  return {
    bridge,
    testDevice,
    testDevices,
    close: async () => {
      bridge.stopDecoding();
      options.io.remove(Port.PciConfig);
      await closeDevices();
    },
  };
}
