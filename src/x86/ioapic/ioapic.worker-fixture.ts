/**
 * Worker side of the cross-thread test in ioapic.state.test.ts: builds its own view over the
 * IOAPIC state it receives, asserts pin 6 and reports the result and the vectors it sent.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { VirtualClock } from '../../base/clock.ts';
import { Ioapic, type IoapicDescriptor } from './ioapic.ts';
import { RecordingSink } from '../controller-test-support.ts';

const sink = new RecordingSink();
const ioapic = Ioapic.fromState(workerData as IoapicDescriptor, { sink, clock: new VirtualClock() });
const result = ioapic.setIrq(6, true);
parentPort?.postMessage({ result, vectors: sink.vectors() });
