/** Event costs: signal + tryRead on one thread, and the signal → wake → signal back round trip between two workers. */
import { startTypeScriptWorker } from '../src/node/worker.ts';
import { Event } from '../src/event/event.ts';
import { summarise, timeOperation, type Benchmark, type BenchResult } from './harness.ts';
import type { PingPongSetup } from './event-pingpong.worker.ts';

const WORKER = new URL('./event-pingpong.worker.ts', import.meta.url);
const ROUND_TRIPS = 5_000;
const SAMPLES = 7;

function signalAndRead(): BenchResult {
  const event = Event.create();
  return timeOperation('event: signal + tryRead, one thread', () => {
    event.signal();
    event.tryRead();
  });
}

function runPingPong(mode: PingPongSetup['mode']): Promise<number> {
  const ping = Event.create().descriptor();
  const pong = Event.create().descriptor();
  const start = (role: PingPongSetup['role']) =>
    startTypeScriptWorker(WORKER, { workerData: { role, mode, ping, pong, roundTrips: ROUND_TRIPS } satisfies PingPongSetup });
  const pongWorker = start('pong');
  const pingWorker = start('ping');
  return new Promise<number>((resolve, reject) => {
    pingWorker.once('message', (elapsedNs: number) => {
      void Promise.all([pingWorker.terminate(), pongWorker.terminate()]).then(() => {
        resolve(elapsedNs / ROUND_TRIPS / 1000);
      });
    });
    pingWorker.once('error', reject);
    pongWorker.once('error', reject);
  });
}

async function pingPong(mode: PingPongSetup['mode']): Promise<BenchResult> {
  const perSample: number[] = [];
  for (let sample = 0; sample < SAMPLES; sample++) perSample.push(await runPingPong(mode));
  return summarise(`event: worker↔worker round trip, ${mode === 'blocking' ? 'blocking wait()' : 'waitAsync()'}`, 'us/roundtrip', perSample, ROUND_TRIPS);
}

export const benchmarks: Benchmark[] = [
  { name: 'event: signal + tryRead, one thread', run: signalAndRead },
  { name: 'event: worker↔worker round trip, blocking wait()', run: () => pingPong('blocking') },
  { name: 'event: worker↔worker round trip, waitAsync()', run: () => pingPong('async') },
];
