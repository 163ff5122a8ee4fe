/**
 * Worker side of the event tests: signals or drains events it receives as descriptors, so the
 * tests exercise real cross-thread handles on one counter.
 */
import { parentPort } from 'node:worker_threads';
import { Event, type EventDescriptor } from './event.ts';
import { IrqLevelEvent, type IrqLevelEventDescriptor } from './irq-event.ts';

export type FixtureRequest =
  /** Signal each amount in turn; every `pauseEvery` signals, sleep `pauseMicros` to vary the interleaving. */
  | { readonly op: 'signal'; readonly event: EventDescriptor; readonly amounts: readonly number[]; readonly pauseEvery: number; readonly pauseMicros: number }
  /** Blocking reader: wait() until `expectedTotal` has been read; reply with the sum and the number of reads. */
  | { readonly op: 'drain'; readonly event: EventDescriptor; readonly expectedTotal: string }
  /** wait() once and reply with what it returned. */
  | { readonly op: 'wait-once'; readonly event: EventDescriptor }
  /** Device side of a level event: trigger, then wait for the resample `rounds` times. */
  | { readonly op: 'level-device'; readonly event: IrqLevelEventDescriptor; readonly rounds: number }
  | { readonly op: 'exit' };

export type FixtureReply =
  | { readonly op: 'signalled'; readonly total: string }
  | { readonly op: 'drained'; readonly total: string; readonly reads: number }
  | { readonly op: 'waited'; readonly count: string }
  | { readonly op: 'device-done'; readonly rounds: number };

if (parentPort === null) throw new Error('event-worker.fixture.ts must run in a worker');
const port = parentPort;

const sleeper = new Int32Array(new SharedArrayBuffer(4));

function handle(request: FixtureRequest): FixtureReply | undefined {
  switch (request.op) {
    case 'signal': {
      const event = Event.fromDescriptor(request.event);
      let total = 0n;
      request.amounts.forEach((amount, index) => {
        event.signal(amount);
        total += BigInt(amount);
        if (request.pauseEvery > 0 && index % request.pauseEvery === 0) Atomics.wait(sleeper, 0, 0, request.pauseMicros / 1000);
      });
      return { op: 'signalled', total: total.toString() };
    }
    case 'drain': {
      const event = Event.fromDescriptor(request.event);
      const expected = BigInt(request.expectedTotal);
      let total = 0n;
      let reads = 0;
      while (total < expected) {
        total += event.wait();
        reads++;
      }
      return { op: 'drained', total: total.toString(), reads };
    }
    case 'wait-once':
      return { op: 'waited', count: Event.fromDescriptor(request.event).wait().toString() };
    case 'level-device': {
      const level = IrqLevelEvent.fromDescriptor(request.event);
      for (let round = 0; round < request.rounds; round++) {
        level.trigger();
        level.clearResampleBlocking();
      }
      return { op: 'device-done', rounds: request.rounds };
    }
    case 'exit':
      port.close();
      return undefined;
  }
}

port.on('message', (request: FixtureRequest) => {
  const reply = handle(request);
  if (reply !== undefined) port.postMessage(reply);
});
