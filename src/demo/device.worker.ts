/**
 * A demo device on its own thread. It raises `interrupts` interrupts: through an edge event (a
 * pulse each) or a level event (assert, then wait for the resample the chip sends at the guest's
 * EOI, and re-assert while work remains).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { IrqEdgeEvent, IrqLevelEvent, type IrqEdgeEventDescriptor, type IrqLevelEventDescriptor } from '../event/irq-event.ts';

export type DemoDeviceSetup =
  | { readonly kind: 'edge'; readonly event: IrqEdgeEventDescriptor; readonly interrupts: number }
  | { readonly kind: 'level'; readonly event: IrqLevelEventDescriptor; readonly interrupts: number };

const setup = workerData as DemoDeviceSetup;

let signalled = 0;
if (setup.kind === 'edge') {
  const edge = IrqEdgeEvent.fromDescriptor(setup.event);
  for (; signalled < setup.interrupts; signalled++) edge.trigger();
} else {
  const level = IrqLevelEvent.fromDescriptor(setup.event);
  for (; signalled < setup.interrupts; signalled++) {
    level.trigger();
    level.clearResampleBlocking();
  }
}
// The device's own count, for the controller to check against what it read.
parentPort?.postMessage(signalled);
