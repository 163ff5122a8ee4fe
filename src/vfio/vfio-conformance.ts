/**
 * Conformance checks of a VFIO device's interrupt ioctls, written against `VfioIrqDevice` alone, so
 * the same checks run against the emulated `VfioIrqs` and, once the native addon exists, a real
 * `/dev/vfio` device. They use only what user space can see of a real device: GET_IRQ_INFO, the
 * errnos, and loopback triggering (DATA_NONE/DATA_BOOL on a bound vector signals its eventfd), so
 * no device interrupt is needed. Each check leaves the device's interrupts disabled. Test support;
 * not part of the API.
 */
import assert from 'node:assert/strict';
import type { Event } from '../event/event.ts';
import { rejectsWith } from '../testing/irq-chip-error.ts';
import { irqInfoOf, type VfioIrqDevice } from './vfio-irq-device.ts';
import {
  encodeIrqSet,
  irqSetBools,
  irqSetEventfds,
  irqSetNone,
  VFIO_IRQ_INFO_AUTOMASKED,
  VFIO_IRQ_INFO_EVENTFD,
  VFIO_IRQ_INFO_MASKABLE,
  VFIO_IRQ_SET_ACTION_MASK,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSIX_IRQ_INDEX,
} from './vfio-uapi.ts';

/** What a check gets: the device, and a way to make events it accepts (eventfds for the real one). */
export interface ConformanceSubject {
  readonly device: VfioIrqDevice;
  readonly newEvent: () => Event;
}

export interface ConformanceCheck {
  readonly name: string;
  readonly run: (subject: ConformanceSubject) => void;
}

/** An fd number no test process has open. */
const UNOPENED_FD = 0x7ffffff0;
const TRIGGER = VFIO_IRQ_SET_ACTION_TRIGGER;
const MSIX = VFIO_PCI_MSIX_IRQ_INDEX;

function assertErrno(code: string, call: () => void, what: string): void {
  assert.throws(call, rejectsWith(code), what);
}

/** Opens `count` new events on the device: [events, fds]. */
function openEvents(subject: ConformanceSubject, count: number): [Event[], number[]] {
  const events = Array.from({ length: count }, () => subject.newEvent());
  return [events, events.map((event) => subject.device.openEventFd(event))];
}

export const CONFORMANCE_CHECKS: readonly ConformanceCheck[] = [
  {
    name: 'GET_IRQ_INFO: INTx is maskable and automasked; MSI-X signals through eventfds',
    run: ({ device }) => {
      const intx = irqInfoOf(device, VFIO_PCI_INTX_IRQ_INDEX);
      if (intx.count > 0) assert.equal(intx.flags & (VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED), VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED);
      const msix = irqInfoOf(device, MSIX);
      assert.ok(msix.count >= 2, 'the checks need an MSI-X table of 2 entries or more');
      assert.equal(msix.flags & VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_INFO_EVENTFD);
    },
  },
  {
    name: 'MSI-X: enable binds; DATA_BOOL and DATA_NONE with count > 0 loop back; count 0 disables',
    run: (subject) => {
      const { device } = subject;
      const [events, fds] = openEvents(subject, 2);
      device.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, fds));
      device.setIrqs(irqSetBools(TRIGGER, MSIX, 0, [false, true]));
      assert.deepEqual(events.map((event) => event.tryRead()), [0n, 1n]);
      device.setIrqs(irqSetNone(TRIGGER, MSIX, 0, 2));
      assert.deepEqual(events.map((event) => event.tryRead()), [1n, 1n]);
      device.setIrqs(irqSetNone(TRIGGER, MSIX, 0, 0));
      assertErrno('EINVAL', () => { device.setIrqs(irqSetNone(TRIGGER, MSIX, 0, 1)); }, 'loopback on a disabled index');
      fds.forEach((fd) => { device.closeEventFd(fd); });
    },
  },
  {
    name: 'errnos: unknown flag EINVAL, MSI-X MASK ENOTTY, unopened fd EBADF, enable with count 0 ERANGE, short argsz EINVAL',
    run: ({ device }) => {
      assertErrno('EINVAL', () => { device.setIrqs(irqSetNone(TRIGGER | (1 << 6), MSIX, 0, 1)); }, 'flag bit 6');
      assertErrno('ENOTTY', () => { device.setIrqs(irqSetNone(VFIO_IRQ_SET_ACTION_MASK, MSIX, 0, 1)); }, 'MSI-X mask');
      assertErrno('EBADF', () => { device.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [UNOPENED_FD])); }, 'unopened fd');
      assertErrno('ERANGE', () => { device.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [])); }, 'enable with start 0, count 0');
      const shortArgsz = encodeIrqSet({ flags: VFIO_IRQ_SET_DATA_EVENTFD | TRIGGER, index: MSIX, start: 0, count: 2, argsz: 24 }, new Uint8Array(8));
      assertErrno('EINVAL', () => { device.setIrqs(shortArgsz); }, 'argsz one fd short');
    },
  },
  {
    name: 'a block that fails part-way unbinds the vectors it processed (§6.16)',
    run: (subject) => {
      const { device } = subject;
      const [events, fds] = openEvents(subject, 2);
      device.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, fds));
      assertErrno('EBADF', () => { device.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [fds[1] ?? -1, UNOPENED_FD])); }, 'second fd unopened');
      device.setIrqs(irqSetNone(TRIGGER, MSIX, 0, 2));
      assert.deepEqual(events.map((event) => event.tryRead()), [0n, 0n], 'both vectors were unbound');
      device.setIrqs(irqSetNone(TRIGGER, MSIX, 0, 0));
      fds.forEach((fd) => { device.closeEventFd(fd); });
    },
  },
];
