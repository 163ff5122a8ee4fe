/**
 * The real path: the conformance checks (vfio-conformance.ts) against the emulated kernel, and
 * against a real `/dev/vfio` device when one can be reached. The real device needs the native
 * addon of the KVM issue (eventfds and the VFIO ioctls), which is not built yet; where `/dev/vfio`
 * is absent, or the addon is, the real-device tests are skipped with the reason printed.
 */
import { existsSync } from 'node:fs';
import { describe, test } from 'node:test';
import { Event } from '../event/event.ts';
import { CONFORMANCE_CHECKS } from './vfio-conformance.ts';
import { VfioIrqs } from './vfio-irqs.ts';

const VFIO_DIRECTORY = '/dev/vfio';

/** Why the real device cannot be tested here (with the addon, this returns undefined when it can). */
function realDeviceUnavailable(): string {
  if (!existsSync(VFIO_DIRECTORY)) return `${VFIO_DIRECTORY} does not exist on this host (no VFIO driver, no device bound to vfio-pci)`;
  return 'the native addon (the KVM issue) has no VFIO path yet: nothing opens a VFIO device or issues its ioctls';
}

describe('VFIO conformance: the emulated kernel (VfioIrqs)', () => {
  for (const check of CONFORMANCE_CHECKS) {
    test(check.name, () => {
      const device = new VfioIrqs({ intx: true, msiVectors: 4, msixVectors: 8, pcie: true });
      check.run({ device, newEvent: () => Event.create() });
    });
  }
});

describe('VFIO conformance: a real /dev/vfio device', () => {
  const reason = realDeviceUnavailable();
  console.log(`skipping the real VFIO device tests: ${reason}`);
  for (const check of CONFORMANCE_CHECKS) {
    test(check.name, { skip: reason }, () => {
      // With the addon: check.run({ device: <the addon's VfioIrqDevice>, newEvent: <an eventfd> }).
      throw new Error('no VfioIrqDevice for a real device exists yet');
    });
  }
});
