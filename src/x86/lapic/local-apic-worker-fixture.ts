/**
 * Worker side of the local APIC's cross-thread tests (local-apic.test.ts): builds its own view of
 * an APIC it knows only by descriptor and accepts one fixed interrupt, or without a vector only
 * calls `wake()`; either rings the doorbell the test's thread sleeps on.
 */
import { workerData } from 'node:worker_threads';
import { VirtualClock, type VirtualClockDescriptor } from '../../base/clock.ts';
import { interruptMessage } from '../interrupt-message.ts';
import { LocalApic, type LocalApicDescriptor } from './local-apic.ts';

export interface DoorbellWorkerData {
  readonly apic: LocalApicDescriptor;
  readonly clock: VirtualClockDescriptor;
  /** The fixed interrupt to accept; without one the worker only wakes the APIC. */
  readonly vector?: number;
}

function run({ apic: descriptor, clock, vector }: DoorbellWorkerData): void {
  const apic = LocalApic.fromState(descriptor, { clock: VirtualClock.fromDescriptor(clock) });
  if (vector === undefined) apic.wake();
  else apic.accept(interruptMessage({ destination: apic.apicId(), vector }));
}

if (workerData !== null) run(workerData as DoorbellWorkerData);
