/**
 * `RealVfioDevice`: a `/dev/vfio` device file behind the `VfioIrqDevice` interface, so the VMM side
 * (`VfioPciInterrupts`) and the conformance checks run unchanged against the real kernel. Open one
 * with `openVfioDevice` (vfio-container.ts), which also holds its group and container.
 *
 * - SET_IRQS and GET_IRQ_INFO pass the caller's bytes (vfio-uapi.ts) to the ioctl unchanged. The
 *   kernel's errno becomes an `IrqChipError` (or a `KvmError` for one outside the package's codes)
 *   through linux.ts. A positive SET_IRQS result is the kernel's short host-vector allocation
 *   (vfio_msi_enable returns what pci_alloc_irq_vectors got, and enables nothing): it becomes the
 *   emulator's `VfioVectorShortageError`.
 * - The kernel reads the buffer at its address, with no length: a request whose header promises
 *   more than the buffer holds would have it read (GET_IRQ_INFO: write) past the end. Such a
 *   request is refused with EFAULT before the ioctl, the emulator's answer for bytes that are not
 *   there. (For a request that is also invalid in another way the emulator may answer EINVAL first.)
 * - Event numbers: the kernel signals and reads the eventfds itself, so only an `OsEvent` has one;
 *   a memory event is refused with EBADF, the errno the kernel gives for a number that names no
 *   file (as `KvmKernelIrqChip` does), before any ioctl. `openEventFd` returns a dup of the
 *   event's fd, owned by the device, so the number stays valid whatever the caller does with its
 *   handle, and `closeEventFd` closes that dup (the kernel keeps its own reference to what it bound).
 * - `serviceIrqfds` does nothing: the kernel's virqfd consumes the INTx unmask eventfd itself.
 * - `close()` (or `using`) closes the eventfd numbers still open, then the device, group and
 *   container fds.
 */

import { check as checkCondition, ErrorCode, IrqChipError } from '../base/errors.ts';
import type { Event } from '../event/event.ts';
import type { VfioIrqDevice } from '../vfio/vfio-irq-device.ts';
import { VfioVectorShortageError } from '../vfio/vfio-irqs.ts';
import {
  decodeIrqSet,
  VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_SET_IRQS,
  VFIO_IRQ_INFO_BYTES,
  VFIO_IRQ_SET_BOOL_BYTES,
  VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_TYPE_MASK,
  VFIO_IRQ_SET_EVENTFD_BYTES,
  VFIO_IRQ_SET_HEADER_BYTES,
  type VfioIrqSet,
} from '../vfio/vfio-uapi.ts';
import { addon, type IrqchipAddon } from './addon.ts';
import { check } from './linux.ts';
import { OsEvent } from './os-event.ts';

/** The system calls the VFIO path makes: the addon's, or a stand-in in tests. */
export type VfioSystemCalls = Pick<IrqchipAddon, 'open' | 'close' | 'dup' | 'ioctl'>;

/** The three open files behind a device, closed in this order: device, group, container. */
export interface VfioDeviceFiles {
  readonly container: number;
  readonly group: number;
  readonly device: number;
}

/**
 * The payload bytes the kernel copies for `set` (vfio_set_irqs_validate_and_prepare): `count`
 * entries of the data type, only when argsz covers them; none otherwise (it refuses first).
 */
function kernelPayloadBytes(set: VfioIrqSet): number {
  const dataType = set.flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
  const entryBytes = dataType === VFIO_IRQ_SET_DATA_BOOL ? VFIO_IRQ_SET_BOOL_BYTES : dataType === VFIO_IRQ_SET_DATA_EVENTFD ? VFIO_IRQ_SET_EVENTFD_BYTES : 0;
  const payloadBytes = set.count * entryBytes;
  return set.argsz - VFIO_IRQ_SET_HEADER_BYTES >= payloadBytes ? payloadBytes : 0;
}

/** The eventfd behind `event`, or EBADF: the kernel signals and reads it itself. */
function eventfdOf(event: Event): OsEvent {
  if (event instanceof OsEvent) return event;
  throw new IrqChipError(
    ErrorCode.EBADF,
    'a VFIO device needs an eventfd (OsEvent from irqchip/kvm): the kernel signals it, and a memory event has no file descriptor',
  );
}

export class RealVfioDevice implements VfioIrqDevice, Disposable {
  /** Dups made by `openEventFd` and not yet closed. */
  private readonly eventFds = new Set<number>();
  private files: VfioDeviceFiles | undefined;

  /** Takes ownership of `files` (use `openVfioDevice` to open them). */
  constructor(
    files: VfioDeviceFiles,
    private readonly system: VfioSystemCalls = addon,
  ) {
    this.files = files;
  }

  get closed(): boolean {
    return this.files === undefined;
  }

  getIrqInfo(bytes: Uint8Array): Uint8Array {
    // The kernel writes the whole struct back (copy_to_user of minsz).
    checkCondition(bytes.byteLength >= VFIO_IRQ_INFO_BYTES, ErrorCode.EFAULT, () =>
      `a vfio_irq_info needs ${VFIO_IRQ_INFO_BYTES} bytes, got ${bytes.byteLength}`,
    );
    const answer = bytes.slice();
    this.deviceIoctl(VFIO_DEVICE_GET_IRQ_INFO, answer, 'VFIO_DEVICE_GET_IRQ_INFO');
    return answer;
  }

  setIrqs(bytes: Uint8Array): void {
    const set = decodeIrqSet(bytes);
    const payloadBytes = kernelPayloadBytes(set);
    checkCondition(set.data.byteLength >= payloadBytes, ErrorCode.EFAULT, () =>
      `the buffer holds ${set.data.byteLength} payload bytes, the kernel would read ${payloadBytes}`,
    );
    const available = this.deviceIoctl(VFIO_DEVICE_SET_IRQS, bytes, 'VFIO_DEVICE_SET_IRQS');
    if (available > 0) throw new VfioVectorShortageError(set.start + set.count, available);
  }

  openEventFd(event: Event): number {
    const eventfd = eventfdOf(event);
    this.openFiles();
    const fd = check(this.system.dup(eventfd.fd), 'dup of an eventfd for VFIO');
    this.eventFds.add(fd);
    return fd;
  }

  closeEventFd(fd: number): void {
    checkCondition(this.eventFds.delete(fd), ErrorCode.EBADF, () => `fd ${fd} is not an event number of this device`);
    this.system.close(fd);
  }

  serviceIrqfds(): void {
    // The kernel's virqfd unmasks INTx when the unmask eventfd is signalled: nothing to do here.
  }

  close(): void {
    const files = this.files;
    if (files === undefined) return;
    this.files = undefined;
    for (const fd of this.eventFds) this.system.close(fd);
    this.eventFds.clear();
    for (const fd of [files.device, files.group, files.container]) this.system.close(fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private openFiles(): VfioDeviceFiles {
    if (this.files === undefined) throw new IrqChipError(ErrorCode.EBADF, 'the VFIO device is closed');
    return this.files;
  }

  private deviceIoctl(request: number, bytes: Uint8Array, operation: string): number {
    return check(this.system.ioctl(this.openFiles().device, request, bytes), operation);
  }
}
