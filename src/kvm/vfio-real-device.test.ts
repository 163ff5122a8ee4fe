/**
 * The real path: the conformance checks (src/vfio/vfio-conformance.ts) against the emulated kernel,
 * and against a real device bound to vfio-pci when the environment names one:
 *
 *   IRQCHIP_VFIO_DEVICE=0000:00:04.0 [IRQCHIP_VFIO_GROUP=<n>] npm test
 *
 * (the group defaults to the device's sysfs iommu_group). The device needs an MSI-X table of 2
 * entries or more. Without /dev/vfio or the variable, the real-device tests are skipped with the
 * reason printed; once the variable is set, a device that cannot be opened is a failure.
 */
import { existsSync } from 'node:fs';
import { describe, test } from 'node:test';
import { Event } from '../event/event.ts';
import { CONFORMANCE_CHECKS } from '../vfio/vfio-conformance.ts';
import { VfioIrqs } from '../vfio/vfio-irqs.ts';
import { OsEvent } from './os-event.ts';
import { openVfioDevice, VFIO_DIRECTORY, type VfioDeviceOptions } from './vfio-container.ts';

const DEVICE_VARIABLE = 'IRQCHIP_VFIO_DEVICE';
const GROUP_VARIABLE = 'IRQCHIP_VFIO_GROUP';

/** The device to test, or why there is none. */
function realDeviceUnderTest(): VfioDeviceOptions | string {
  if (!existsSync(VFIO_DIRECTORY)) return `${VFIO_DIRECTORY} does not exist on this host (no VFIO driver, no device bound to vfio-pci)`;
  const device = process.env[DEVICE_VARIABLE];
  if (device === undefined || device === '') return `${DEVICE_VARIABLE} is not set (name a PCI device bound to vfio-pci, e.g. 0000:00:04.0; optionally ${GROUP_VARIABLE})`;
  const group = process.env[GROUP_VARIABLE];
  return group === undefined || group === '' ? { device } : { device, group: Number(group) };
}

describe('VFIO conformance: the emulated kernel (VfioIrqs)', () => {
  for (const check of CONFORMANCE_CHECKS) {
    test(check.name, () => {
      const device = new VfioIrqs({ intx: true, msiVectors: 4, msixVectors: 8, pcie: true });
      check.run({ device, newEvent: () => Event.create() });
    });
  }
});

describe('VFIO conformance: a real /dev/vfio device (RealVfioDevice)', () => {
  const subject = realDeviceUnderTest();
  const skip = typeof subject === 'string' ? subject : false;
  if (skip !== false) console.log(`skipping the real VFIO device tests: ${skip}`);
  for (const check of CONFORMANCE_CHECKS) {
    test(check.name, { skip }, () => {
      if (typeof subject === 'string') return;
      const events: OsEvent[] = [];
      const device = openVfioDevice(subject);
      try {
        check.run({
          device,
          newEvent: () => {
            const event = OsEvent.create();
            events.push(event);
            return event;
          },
        });
      } finally {
        device.close();
        for (const event of events) event.close();
      }
    });
  }
});
