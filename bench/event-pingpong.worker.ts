/**
 * One side of the event ping-pong benchmark. The "ping" side signals `ping`, waits for `pong`, and
 * times the whole run; the "pong" side answers each ping. `mode` picks the wait: the blocking
 * `wait()` or `waitAsync()` followed by `tryRead()`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Event, type EventDescriptor } from '../src/event/event.ts';

export interface PingPongSetup {
  readonly role: 'ping' | 'pong';
  readonly mode: 'blocking' | 'async';
  readonly ping: EventDescriptor;
  readonly pong: EventDescriptor;
  readonly roundTrips: number;
}

const setup = workerData as PingPongSetup;
const WARMUP_ROUND_TRIPS = 500;
const ping = Event.fromDescriptor(setup.ping);
const pong = Event.fromDescriptor(setup.pong);

async function receive(event: Event): Promise<void> {
  if (setup.mode === 'blocking') {
    event.wait();
    return;
  }
  while (event.tryRead() === 0n) await event.waitAsync();
}

async function roundTrips(count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    if (setup.role === 'ping') {
      ping.signal();
      await receive(pong);
    } else {
      await receive(ping);
      pong.signal();
    }
  }
}

// Untimed warm-up: the first round trip waits for the other worker to load, and the JIT settles.
await roundTrips(WARMUP_ROUND_TRIPS);
const start = process.hrtime.bigint();
await roundTrips(setup.roundTrips);
parentPort?.postMessage(Number(process.hrtime.bigint() - start));
