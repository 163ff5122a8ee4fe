/**
 * A thread with its own view of a `KvmSplitIrqChip` (kvm-split-irq-chip.test.ts): it programs a
 * redirection entry as a guest on this thread would (its entry listener pushes KVM's table from
 * here), services an event the owner registered after the view was described, and raises the
 * PIC's output, which kicks vCPU 0's thread. Then it reports and ends.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { entryHigh, entryLow, writeEntry } from '../x86/ioapic/test-support.ts';
import { KvmSplitIrqChip, type KvmSplitIrqChipDescriptor } from './kvm-split-irq-chip.ts';

export interface SplitChipViewData {
  readonly chip: KvmSplitIrqChipDescriptor;
  /** IOAPIC pin to program level-triggered with `vector` for APIC 0. */
  readonly pin: number;
  readonly vector: number;
  /** The owner's event to service. */
  readonly eventIndex: number;
  /** A GSI routed to the PIC, to raise. */
  readonly picIrq: number;
}

export interface SplitChipViewReply {
  readonly pushesSeen: number;
}

const data = workerData as SplitChipViewData;
const view = KvmSplitIrqChip.fromDescriptor(data.chip);
writeEntry(view.ioapic, data.pin, entryLow({ vector: data.vector, level: true }), entryHigh(0));
view.serviceIrqEvent(data.eventIndex);
view.serviceIrq(data.picIrq, true);
parentPort?.postMessage({ pushesSeen: view.kvmRoutePushes() } satisfies SplitChipViewReply);
