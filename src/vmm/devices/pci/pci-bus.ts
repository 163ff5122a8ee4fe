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
  readonly testDevice: PciTestDevice;
  /** Takes the bridge off the port bus and the BARs off the MMIO bus, and shuts the test device's interrupts down. */
  close(): Promise<void>;
}

/** Builds the bus, places the bridge on `io` (EEXIST if the ports are taken) and assigns resources. */
export function createPciBus(options: PciBusOptions): PciBus {
  const bridge = new PciHostBridge({ mmio: options.mmio, window: PCI_MMIO_WINDOW });
  options.io.insert(bridge, Port.PciConfig, Port.PciConfigBytes);
  let testDevice: PciTestDevice | undefined;
  try {
    testDevice = new PciTestDevice({ chip: options.chip, gsis: options.gsis, intxGsi: Gsi.PciTestDeviceIntx });
    bridge.attach(PCI_TEST_DEVICE_SLOT, testDevice);
    bridge.assignResources();
  } catch (error) {
    bridge.stopDecoding();
    options.io.remove(Port.PciConfig);
    void testDevice?.close();
    throw error;
  }
  const device = testDevice;
  return {
    bridge,
    testDevice: device,
    close: async () => {
      bridge.stopDecoding();
      options.io.remove(Port.PciConfig);
      await device.close();
    },
  };
}
