/**
 * The demonstration `npm start` runs until the VMM exists: devices on worker threads raise edge and
 * level interrupts through events; this thread plays the interrupt controller, consuming triggers
 * and answering level assertions with resamples as a guest's EOI would. It returns a per-source
 * summary: what each device signalled and how the controller saw it (delivered, or coalesced by
 * the eventfd rule that many signals before a read are one wake-up).
 */
import { startTypeScriptWorker } from '../node/worker.ts';
import { IrqEdgeEvent, IrqLevelEvent } from '../event/irq-event.ts';
import type { DemoDeviceSetup } from './device.worker.ts';

export interface SourceSummary {
  readonly source: string;
  readonly kind: 'edge' | 'level';
  /** Signals the device says it sent. */
  readonly signalled: number;
  /** Signals the controller read off the event (the eventfd counts); equal to `signalled` when none is lost. */
  readonly received: number;
  /** Wake-ups the controller took (each one interrupt delivered to the guest). */
  readonly delivered: number;
  /** Signals folded into an earlier wake-up: eventfd's counter collapses them. */
  readonly coalesced: number;
  readonly resamples: number;
}

const DEVICE = new URL('./device.worker.ts', import.meta.url);

/** Runs a device to completion; resolves with the number of signals it reports having sent. */
function runDevice(setup: DemoDeviceSetup): Promise<number> {
  const worker = startTypeScriptWorker(DEVICE, { workerData: setup });
  return new Promise((resolve, reject) => {
    worker.once('message', (signalled: number) => {
      void worker.terminate().then(() => {
        resolve(signalled);
      });
    });
    worker.once('error', reject);
  });
}

export async function runEventDemo(interruptsPerDevice = 2_000): Promise<SourceSummary[]> {
  const edge = new IrqEdgeEvent();
  const level = new IrqLevelEvent();
  const edgeDone = runDevice({ kind: 'edge', event: edge.descriptor(), interrupts: interruptsPerDevice });
  const levelDone = runDevice({ kind: 'level', event: level.descriptor(), interrupts: interruptsPerDevice });

  const edgeCount = { delivered: 0, signals: 0 };
  const levelCount = { delivered: 0, signals: 0, resamples: 0 };
  let devicesRunning = 2;
  void edgeDone.then(() => devicesRunning--);
  void levelDone.then(() => devicesRunning--);

  // The controller loop: take whatever is pending on either source, then sleep until one signals.
  while (devicesRunning > 0 || edge.getTrigger().readCount() !== 0n || level.getTrigger().readCount() !== 0n) {
    const edgeSignals = edge.getTrigger().tryRead();
    if (edgeSignals !== 0n) {
      edgeCount.delivered++;
      edgeCount.signals += Number(edgeSignals);
    }
    const levelSignals = level.getTrigger().tryRead();
    if (levelSignals !== 0n) {
      levelCount.delivered++;
      levelCount.signals += Number(levelSignals);
      // The guest handles the interrupt and EOIs: the controller tells the device to re-check.
      level.triggerResample();
      levelCount.resamples++;
    }
    if (edgeSignals === 0n && levelSignals === 0n) {
      await Promise.race([edge.getTrigger().waitAsync(5), level.getTrigger().waitAsync(5)]);
    }
  }
  const [edgeSignalled, levelSignalled] = await Promise.all([edgeDone, levelDone]);
  return [
    summarise('edge device', 'edge', edgeSignalled, edgeCount.signals, edgeCount.delivered, 0),
    summarise('level device', 'level', levelSignalled, levelCount.signals, levelCount.delivered, levelCount.resamples),
  ];
}

function summarise(source: string, kind: SourceSummary['kind'], signalled: number, received: number, delivered: number, resamples: number): SourceSummary {
  return { source, kind, signalled, received, delivered, coalesced: received - delivered, resamples };
}
