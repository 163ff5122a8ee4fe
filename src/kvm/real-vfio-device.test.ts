/**
 * RealVfioDevice and openVfioDevice where no VFIO device exists: the ioctl numbers, the open
 * sequence and its cleanup against a recording stand-in for the system calls, and the real
 * addon's failures on nodes that are missing or are not VFIO.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Event } from '../event/event.ts';
import { rejectsWith } from '../testing/irq-chip-error.ts';
import { VfioVectorShortageError } from '../vfio/vfio-irqs.ts';
import {
  encodeIrqInfo,
  encodeIrqSet,
  irqSetEventfds,
  VFIO_CHECK_EXTENSION,
  VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_SET_IRQS,
  VFIO_GET_API_VERSION,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_PCI_MSIX_IRQ_INDEX,
  VFIO_SET_IOMMU,
} from '../vfio/vfio-uapi.ts';
import { KvmError } from './linux.ts';
import { OsEvent } from './os-event.ts';
import { RealVfioDevice, type VfioSystemCalls } from './real-vfio-device.ts';
import { openVfioDevice } from './vfio-container.ts';

const ENOENT = 2;
const EIO = 5;
const EINVAL = 22;
const DEVICE = '0000:00:04.0';
const GROUP = 7;

const scratch = mkdtempSync(join(tmpdir(), 'irqchip-vfio-'));
after(() => {
  rmSync(scratch, { recursive: true, force: true });
});

/** `_IO(';', nr)` from asm-generic/ioctl.h, written out: dir 0 (bits 30-31), size 0 (16-29), type (8-15), nr (0-7). */
function kernelIo(nr: number): number {
  const type = ';'.charCodeAt(0);
  return (0 << 30) + (0 << 16) + type * 0x100 + nr;
}

test('VFIO ioctl numbers are the kernel _IO(";", 100 + n) values', () => {
  const expected: [number, number, number][] = [
    [VFIO_GET_API_VERSION, 100, 0x3b64],
    [VFIO_CHECK_EXTENSION, 101, 0x3b65],
    [VFIO_SET_IOMMU, 102, 0x3b66],
    [VFIO_GROUP_GET_STATUS, 103, 0x3b67],
    [VFIO_GROUP_SET_CONTAINER, 104, 0x3b68],
    [VFIO_GROUP_GET_DEVICE_FD, 106, 0x3b6a],
    [VFIO_DEVICE_GET_IRQ_INFO, 109, 0x3b6d],
    [VFIO_DEVICE_SET_IRQS, 110, 0x3b6e],
  ];
  for (const [actual, nr, literal] of expected) {
    assert.equal(kernelIo(nr), literal);
    assert.equal(actual, literal, `ioctl ${nr}`);
  }
});

/** One ioctl as the stand-in saw it: the argument's bytes are copied at call time. */
interface IoctlCall {
  readonly fd: number;
  readonly request: number;
  readonly arg: number | bigint | Uint8Array | undefined;
}

/**
 * A stand-in for the addon's system calls: hands out fd numbers, records ioctls, answers them from
 * `replies` (request → result, or a function that may also fill the buffer), and knows which fds
 * are still open.
 */
class FakeSystem implements VfioSystemCalls {
  readonly openFds = new Set<number>();
  readonly ioctls: IoctlCall[] = [];
  readonly replies = new Map<number, number | ((arg: ArrayBufferView | undefined) => number)>();
  private nextFd = 100;

  open(path: string): number {
    return path.includes('/missing/') ? -ENOENT : this.newFd();
  }

  dup(): number {
    return this.newFd();
  }

  close(fd: number): number {
    assert.ok(this.openFds.delete(fd), `close of fd ${fd}, which is not open`);
    return 0;
  }

  ioctl(fd: number, request: number, arg?: number | bigint | ArrayBufferView): number {
    const view = typeof arg === 'object' ? arg : undefined;
    const recorded = typeof arg === 'object' ? new Uint8Array(arg.buffer, arg.byteOffset, arg.byteLength).slice() : arg;
    this.ioctls.push({ fd, request, arg: recorded });
    const reply = this.replies.get(request) ?? 0;
    return typeof reply === 'number' ? reply : reply(view);
  }

  newFd(): number {
    const fd = this.nextFd++;
    this.openFds.add(fd);
    return fd;
  }
}

/** A stand-in kernel whose container has Type1v2 and whose group is viable. */
function workingSystem(): FakeSystem {
  const system = new FakeSystem();
  system.replies.set(VFIO_CHECK_EXTENSION, 1);
  system.replies.set(VFIO_GROUP_GET_STATUS, (arg) => {
    if (arg !== undefined) new DataView(arg.buffer, arg.byteOffset).setUint32(4, 1, true);
    return 0;
  });
  system.replies.set(VFIO_GROUP_GET_DEVICE_FD, () => system.newFd());
  return system;
}

function openFakeDevice(system: FakeSystem): RealVfioDevice {
  return openVfioDevice({ device: DEVICE, group: GROUP, vfioDirectory: '/fake', system });
}

test('openVfioDevice issues the container/group sequence with the kernel arguments', () => {
  const system = workingSystem();
  const device = openFakeDevice(system);
  const [container, group] = [100, 101];
  assert.deepEqual(
    system.ioctls.map(({ fd, request, arg }) => [fd, request, arg]),
    [
      [container, VFIO_GET_API_VERSION, undefined],
      [container, VFIO_CHECK_EXTENSION, 3],
      [group, VFIO_GROUP_GET_STATUS, Uint8Array.of(8, 0, 0, 0, 0, 0, 0, 0)],
      [group, VFIO_GROUP_SET_CONTAINER, Uint8Array.of(container, 0, 0, 0)],
      [container, VFIO_SET_IOMMU, 3],
      [group, VFIO_GROUP_GET_DEVICE_FD, new TextEncoder().encode(`${DEVICE}\0`)],
    ],
  );
  assert.deepEqual([...system.openFds], [100, 101, 102], 'container, group, device');
  device.close();
  assert.deepEqual([...system.openFds], []);
});

test('openVfioDevice falls back to Type1 without Type1v2, and is ENODEV with neither', () => {
  const system = workingSystem();
  system.replies.set(VFIO_CHECK_EXTENSION, 0);
  assert.throws(() => openFakeDevice(system), rejectsWith('ENODEV'));
  assert.deepEqual([...system.openFds], [], 'the container was closed');
  const type1Only = workingSystem();
  let asked = 0;
  type1Only.replies.set(VFIO_CHECK_EXTENSION, () => (asked++ === 0 ? 0 : 1));
  openFakeDevice(type1Only).close();
  assert.deepEqual(type1Only.ioctls.find((call) => call.request === VFIO_SET_IOMMU)?.arg, 1);
});

test('a group that is not viable is ENODEV, with the group and container closed', () => {
  const system = workingSystem();
  system.replies.set(VFIO_GROUP_GET_STATUS, 0);
  assert.throws(() => openFakeDevice(system), rejectsWith('ENODEV'));
  assert.deepEqual([...system.openFds], []);
  assert.ok(!system.ioctls.some((call) => call.request === VFIO_GROUP_SET_CONTAINER));
});

test('a refused GET_DEVICE_FD throws the kernel errno and closes the group and container', () => {
  const system = workingSystem();
  system.replies.set(VFIO_GROUP_GET_DEVICE_FD, -EINVAL);
  assert.throws(() => openFakeDevice(system), rejectsWith('EINVAL'));
  assert.deepEqual([...system.openFds], []);
});

test('a missing /dev/vfio/vfio is ENOENT with nothing opened (stand-in and real addon)', () => {
  const system = new FakeSystem();
  assert.throws(() => openVfioDevice({ device: DEVICE, group: GROUP, vfioDirectory: '/missing/', system }), rejectsWith('ENOENT'));
  assert.deepEqual([...system.openFds], []);
  assert.deepEqual(system.ioctls, []);
  const before = readdirSync('/proc/self/fd');
  assert.throws(() => openVfioDevice({ device: DEVICE, group: GROUP, vfioDirectory: join(scratch, 'absent') }), rejectsWith('ENOENT'));
  assert.deepEqual(readdirSync('/proc/self/fd'), before);
});

test('a container node that is not VFIO fails with the kernel ENOTTY and is closed (real addon)', () => {
  writeFileSync(join(scratch, 'vfio'), '');
  const before = readdirSync('/proc/self/fd');
  assert.throws(() => openVfioDevice({ device: DEVICE, group: GROUP, vfioDirectory: scratch }), rejectsWith('ENOTTY'));
  assert.deepEqual(readdirSync('/proc/self/fd'), before);
});

test('a device name that is not a PCI address is EINVAL before any system call', () => {
  const system = workingSystem();
  for (const device of ['0000:00:04.0\0x', '00:04.0', '0000:00:20.0', '0000:00:04.8']) {
    assert.throws(() => openVfioDevice({ device, group: GROUP, system }), rejectsWith('EINVAL'), device);
  }
  assert.deepEqual(system.ioctls, []);
  assert.deepEqual([...system.openFds], []);
});

test('a memory Event is refused with EBADF before any ioctl; an OsEvent gets a dup that closeEventFd closes', () => {
  const system = workingSystem();
  const device = openFakeDevice(system);
  const ioctlsAfterOpen = system.ioctls.length;
  const openAfterOpen = system.openFds.size;
  assert.throws(() => device.openEventFd(Event.create()), rejectsWith('EBADF'));
  assert.equal(system.ioctls.length, ioctlsAfterOpen);
  assert.equal(system.openFds.size, openAfterOpen);
  const event = OsEvent.create();
  try {
    const fd = device.openEventFd(event);
    assert.ok(system.openFds.has(fd) && fd !== event.fd);
    device.closeEventFd(fd);
    assert.ok(!system.openFds.has(fd));
    assert.throws(() => { device.closeEventFd(fd); }, rejectsWith('EBADF'));
    device.openEventFd(event);
    device.close();
    assert.deepEqual([...system.openFds], [], 'close() closed the event number still open and the three files');
    assert.throws(() => device.openEventFd(event), rejectsWith('EBADF'));
  } finally {
    event.close();
  }
});

test('SET_IRQS passes the exact bytes; errnos map through linux.ts; a positive result is VfioVectorShortageError', () => {
  const system = workingSystem();
  using device = openFakeDevice(system);
  const request = irqSetEventfds(VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, [5, -1, 7]);
  device.setIrqs(request);
  assert.deepEqual(system.ioctls.at(-1), { fd: 102, request: VFIO_DEVICE_SET_IRQS, arg: request });
  system.replies.set(VFIO_DEVICE_SET_IRQS, 2);
  assert.throws(
    () => { device.setIrqs(request); },
    (error: unknown) => error instanceof VfioVectorShortageError && error.code === 'ENOSPC' && error.requested === 3 && error.available === 2,
  );
  system.replies.set(VFIO_DEVICE_SET_IRQS, -EINVAL);
  assert.throws(() => { device.setIrqs(request); }, rejectsWith('EINVAL'));
  system.replies.set(VFIO_DEVICE_SET_IRQS, -EIO);
  assert.throws(() => { device.setIrqs(request); }, (error: unknown) => error instanceof KvmError && error.code === 'EIO');
});

test('a buffer shorter than what the kernel would read is EFAULT before any ioctl', () => {
  const system = workingSystem();
  using device = openFakeDevice(system);
  const ioctls = system.ioctls.length;
  const promisesTwoFds = encodeIrqSet({ flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: VFIO_PCI_MSIX_IRQ_INDEX, start: 0, count: 2, argsz: 28 }, new Uint8Array(4));
  assert.throws(() => { device.setIrqs(promisesTwoFds); }, rejectsWith('EFAULT'));
  assert.throws(() => { device.setIrqs(new Uint8Array(19)); }, rejectsWith('EFAULT'));
  assert.throws(() => device.getIrqInfo(new Uint8Array(15)), rejectsWith('EFAULT'));
  assert.equal(system.ioctls.length, ioctls);
  // An argsz too small for the payload: the kernel refuses it (EINVAL) without reading, so it is passed on.
  system.replies.set(VFIO_DEVICE_SET_IRQS, -EINVAL);
  const argszOneFdShort = encodeIrqSet({ flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: VFIO_PCI_MSIX_IRQ_INDEX, start: 0, count: 2 }, new Uint8Array(4));
  assert.throws(() => { device.setIrqs(argszOneFdShort); }, rejectsWith('EINVAL'));
  assert.equal(system.ioctls.length, ioctls + 1);
});

test('GET_IRQ_INFO answers in a copy filled by the kernel, leaving the request untouched', () => {
  const system = workingSystem();
  using device = openFakeDevice(system);
  system.replies.set(VFIO_DEVICE_GET_IRQ_INFO, (arg) => {
    if (arg !== undefined) new DataView(arg.buffer, arg.byteOffset).setUint32(12, 9, true);
    return 0;
  });
  const request = encodeIrqInfo({ index: VFIO_PCI_MSIX_IRQ_INDEX });
  const answer = device.getIrqInfo(request);
  assert.equal(new DataView(answer.buffer).getUint32(12, true), 9);
  assert.deepEqual(request, encodeIrqInfo({ index: VFIO_PCI_MSIX_IRQ_INDEX }));
});
