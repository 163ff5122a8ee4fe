/**
 * Worker side of the cross-thread bus test (integration.test.ts): a device thread that knows the
 * APIC bus and the local APICs only by their descriptors builds its own views, puts its APIC views
 * on its bus view, and delivers MSI writes, as a device model on its own thread would.
 */
import { parentPort } from 'node:worker_threads';
import { VirtualClock, type VirtualClockDescriptor } from '../base/clock.ts';
import { ApicBus, type ApicBusDescriptor } from './lapic/apic-bus.ts';
import { LocalApic, type LocalApicDescriptor } from './lapic/local-apic.ts';

export interface MsiWrite {
  readonly addressLow: number;
  readonly data: number;
}

export interface BusWorkerRequest {
  readonly bus: ApicBusDescriptor;
  readonly apics: readonly LocalApicDescriptor[];
  readonly clock: VirtualClockDescriptor;
  readonly writes: readonly MsiWrite[];
}

/** The bus result of each write, in order. */
export type BusWorkerReply = readonly number[];

if (parentPort === null) throw new Error('apic-bus-worker.fixture.ts must run in a worker');
const port = parentPort;

port.on('message', (request: BusWorkerRequest) => {
  const clock = VirtualClock.fromDescriptor(request.clock);
  const bus = ApicBus.fromState(request.bus);
  for (const descriptor of request.apics) bus.addMember(LocalApic.fromState(descriptor, { clock, ipiSink: bus }));
  const results: BusWorkerReply = request.writes.map((write) => bus.deliverMsi(write.addressLow, 0, write.data));
  port.postMessage(results);
});
