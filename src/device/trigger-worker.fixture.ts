/**
 * A device on its own thread for the device layer's cross-thread test: it builds a view of the chip
 * and an `InterruptTrigger` from the group's descriptor, and raises `count` interrupts on source
 * `index` each time it is asked, replying when done.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { UserspaceIrqChip, type UserspaceIrqChipDescriptor } from '../chip/userspace-irq-chip.ts';
import { InterruptTrigger, type InterruptTriggerDescriptor } from './interrupt-trigger.ts';

export interface TriggerWorkerData {
  readonly chip: UserspaceIrqChipDescriptor;
  readonly trigger: InterruptTriggerDescriptor;
}

export interface TriggerRequest {
  readonly index: number;
  readonly count: number;
}

const data = workerData as TriggerWorkerData;
const device = InterruptTrigger.fromDescriptor(data.trigger, UserspaceIrqChip.fromDescriptor(data.chip));
parentPort?.on('message', (request: TriggerRequest) => {
  for (let raised = 0; raised < request.count; raised++) device.trigger(request.index);
  parentPort?.postMessage('done');
});
