/**
 * Worker side of the PIC's cross-thread test (pic.test.ts): pulses two IRQs on a pair it knows
 * only by descriptor, counts the pulses the PIC reported as new requests, and raises a flag when
 * done (also on failure, so the test's spin loop always ends).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { PicPair, type PicPairDescriptor } from './pic.ts';

/** Words of the flags buffer shared with the test. */
export const WorkerFlag = { Done: 0, RaisedFirst: 1, RaisedSecond: 2 } as const;
export const WORKER_FLAG_WORDS = 3;

export interface PulseWorkerData {
  readonly pic: PicPairDescriptor;
  readonly flags: SharedArrayBuffer;
  readonly irqs: readonly [number, number];
  readonly pulses: number;
}

function pulseBoth({ pic: descriptor, flags: flagBuffer, irqs, pulses }: PulseWorkerData): void {
  const pic = PicPair.fromState(descriptor);
  const flags = new Int32Array(flagBuffer);
  try {
    for (let pulse = 0; pulse < pulses; pulse++) {
      if (pic.setIrq(irqs[0], true) === 1) Atomics.add(flags, WorkerFlag.RaisedFirst, 1);
      pic.setIrq(irqs[0], false);
      if (pic.setIrq(irqs[1], true) === 1) Atomics.add(flags, WorkerFlag.RaisedSecond, 1);
      pic.setIrq(irqs[1], false);
    }
  } finally {
    Atomics.store(flags, WorkerFlag.Done, 1);
  }
}

parentPort?.once('message', () => {
  pulseBoth(workerData as PulseWorkerData);
});
parentPort?.postMessage('ready');
