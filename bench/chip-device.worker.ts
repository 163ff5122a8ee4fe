/**
 * The device side of the chip's cross-worker benchmarks (chip.bench.ts): on its own view of the
 * chip, it raises one interrupt at a time the way a device thread with its own irq handler does
 * (trigger the event, then service it: `serviceIrqEvent`, and `processDelayedIrqEvents` if the
 * IOAPIC was busy), and waits, blocking, until the guest has finished with it: the resample event
 * for a level interrupt, the handler's completion event otherwise. It times each sample of
 * round trips and posts the figures.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { UserspaceIrqChip, type UserspaceIrqChipDescriptor } from '../src/chip/userspace-irq-chip.ts';
import { Event, type EventDescriptor } from '../src/event/event.ts';
import { IrqEdgeEvent, IrqLevelEvent, type IrqEdgeEventDescriptor, type IrqLevelEventDescriptor } from '../src/event/irq-event.ts';

export interface ChipDeviceSetup {
  readonly chip: UserspaceIrqChipDescriptor;
  readonly event: IrqEdgeEventDescriptor | IrqLevelEventDescriptor;
  /** The event's index in the chip's table (the owner registered it). */
  readonly index: number;
  /** Signalled by the guest's handler after its EOI; absent for a level event (its resample says it). */
  readonly completion: EventDescriptor | undefined;
  readonly warmupInterrupts: number;
  readonly interruptsPerSample: number;
  readonly samples: number;
}

export interface ChipDeviceResult {
  /** Nanoseconds per round trip, one figure per sample. */
  readonly nsPerInterrupt: readonly number[];
  readonly raised: number;
}

const setup = workerData as ChipDeviceSetup;
const chip = UserspaceIrqChip.fromDescriptor(setup.chip);
const delayedToken = chip.irqDelayedEventToken();
const level = setup.event.kind === 'irq-level-event' ? IrqLevelEvent.fromDescriptor(setup.event) : undefined;
const edge = setup.event.kind === 'irq-edge-event' ? IrqEdgeEvent.fromDescriptor(setup.event) : undefined;
const completion = setup.completion === undefined ? undefined : Event.fromDescriptor(setup.completion);
let raised = 0;

function raiseAndWait(): void {
  (level ?? edge)?.trigger();
  chip.serviceIrqEvent(setup.index);
  while (delayedToken.readCount() !== 0n) chip.processDelayedIrqEvents();
  raised++;
  if (level !== undefined) level.clearResampleBlocking();
  else completion?.wait();
}

for (let interrupt = 0; interrupt < setup.warmupInterrupts; interrupt++) raiseAndWait();
const nsPerInterrupt: number[] = [];
for (let sample = 0; sample < setup.samples; sample++) {
  const start = process.hrtime.bigint();
  for (let interrupt = 0; interrupt < setup.interruptsPerSample; interrupt++) raiseAndWait();
  nsPerInterrupt.push(Number(process.hrtime.bigint() - start) / setup.interruptsPerSample);
}
parentPort?.postMessage({ nsPerInterrupt, raised } satisfies ChipDeviceResult);
