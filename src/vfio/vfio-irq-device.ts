/**
 * `VfioIrqDevice`: what the VMM side (`VfioPciInterrupts`) needs from a VFIO device file to set up
 * the device's interrupts: the two ioctls, numbers for the eventfds it passes in SET_IRQS payloads,
 * and a hook for the work the kernel does on its own.
 *
 * `VfioIrqs` (the emulated vfio-pci) implements it; the real path, a `/dev/vfio` device fd driven
 * through the native addon, is to implement the same interface, so the VMM side and the
 * conformance checks (`vfio-conformance.ts`) run unchanged against either.
 */

import type { Event } from '../event/event.ts';
import { decodeIrqInfo, encodeIrqInfo, type VfioIrqInfo } from './vfio-uapi.ts';

export interface VfioIrqDevice {
  /** VFIO_DEVICE_GET_IRQ_INFO: `bytes` is a `vfio_irq_info` request; returns the answered copy. */
  getIrqInfo(bytes: Uint8Array): Uint8Array;
  /** VFIO_DEVICE_SET_IRQS with a `vfio_irq_set` buffer; throws `IrqChipError` with the kernel's errno. */
  setIrqs(bytes: Uint8Array): void;
  /** A number under which SET_IRQS payloads name `event` (for an eventfd-backed event: its fd). */
  openEventFd(event: Event): number;
  /** Releases a number from `openEventFd`. Bindings made through it stay: the kernel holds the eventfd. */
  closeEventFd(fd: number): void;
  /**
   * Runs what the kernel does by itself when an eventfd it listens on is signalled: the INTx unmask
   * eventfd (vfio's virqfd). The emulated kernel has no wait queue and does it here; the real kernel
   * needs nothing, so there it is a no-op. Call it from the service loop when an unmask eventfd is
   * readable; never read that eventfd yourself (the count is the kernel's to consume).
   */
  serviceIrqfds(): void;
}

/** VFIO_DEVICE_GET_IRQ_INFO for `index`, decoded. */
export function irqInfoOf(device: VfioIrqDevice, index: number): VfioIrqInfo {
  return decodeIrqInfo(device.getIrqInfo(encodeIrqInfo({ index })));
}
