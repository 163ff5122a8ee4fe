/**
 * KVM_IRQFD: binding an eventfd to a GSI, so that KVM injects the GSI whenever the eventfd is
 * signalled, with no thread of ours involved (virt/kvm/eventfd.c). KVM reads the eventfd itself,
 * so only an `OsEvent` can be one.
 */

import { checkRange, ErrorCode, IrqChipError } from '../base/errors.ts';
import type { Event } from '../event/event.ts';
import { KVM_IRQFD_BYTES, KVM_IRQFD_FLAG_DEASSIGN, KVM_IRQFD_FLAG_RESAMPLE, KVM_MAX_IRQ_ROUTES, KvmIoctl } from './kvm-abi.ts';
import type { KvmVm } from './kvm-vm.ts';
import { OsEvent } from './os-event.ts';

/** Assigns and deassigns one VM's irqfds; one per thread (it reuses one struct kvm_irqfd). */
export class KvmIrqfds {
  private readonly request = new DataView(new ArrayBuffer(KVM_IRQFD_BYTES));

  constructor(private readonly vm: KvmVm) {}

  /**
   * Binds `trigger` to `gsi`; with `resample`, KVM holds the line from each signal until the
   * guest's EOI and then signals `resample` (KVM_IRQFD_FLAG_RESAMPLE, full in-kernel irqchip only).
   * KVM refuses an eventfd already bound (EBUSY).
   */
  assign(gsi: number, trigger: OsEvent, resample: OsEvent | undefined): void {
    checkRange(gsi, 0, KVM_MAX_IRQ_ROUTES - 1, 'GSI');
    const operation = resample === undefined ? 'KVM_IRQFD' : 'KVM_IRQFD with KVM_IRQFD_FLAG_RESAMPLE';
    this.call(trigger.fd, gsi, resample === undefined ? 0 : KVM_IRQFD_FLAG_RESAMPLE, resample?.fd ?? 0, operation);
  }

  /**
   * Unbinds `trigger` from `gsi`. KVM finds the irqfd by its eventfd and GSI, so a clone of the
   * bound event (another fd on the same eventfd) unbinds it too. A memory event can never have
   * been bound: nothing to do.
   */
  deassign(gsi: number, trigger: Event): void {
    checkRange(gsi, 0, KVM_MAX_IRQ_ROUTES - 1, 'GSI');
    if (!(trigger instanceof OsEvent)) return;
    this.call(trigger.fd, gsi, KVM_IRQFD_FLAG_DEASSIGN, 0, 'KVM_IRQFD deassign');
  }

  private call(fd: number, gsi: number, flags: number, resampleFd: number, operation: string): void {
    const { request } = this;
    request.setUint32(0, fd, true);
    request.setUint32(4, gsi, true);
    request.setUint32(8, flags, true);
    request.setUint32(12, resampleFd, true);
    this.vm.ioctl(KvmIoctl.IRQFD, request, operation);
  }
}

/** The OS event behind a device's event, or EBADF (KVM's answer for a descriptor that names no file). */
export function irqfdEvent(event: Event, role: 'trigger' | 'resample', chipName: string): OsEvent {
  if (event instanceof OsEvent) return event;
  throw new IrqChipError(
    ErrorCode.EBADF,
    `${chipName} needs an eventfd as the ${role} event (OsEvent from irqchip/kvm, or the chip's createIrqEvent()): KVM signals and reads it in the kernel, and a memory event has no file descriptor`,
  );
}
