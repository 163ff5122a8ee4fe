/** Test support for the VFIO engine's tests: a device, events installed as fds, checks that a refusal changed nothing. */

import assert from 'node:assert/strict';
import { Event } from '../event/event.ts';
import { rejectsWith } from '../testing/irq-chip-error.ts';
import { VfioIrqs, type VfioIrqsConfig, type VfioIrqsState } from './vfio-irqs.ts';

/** A PCIe function with an INTx pin, 8 MSI vectors and a 16-entry MSI-X table. */
export const TYPICAL_FUNCTION: VfioIrqsConfig = { intx: true, msiVectors: 8, msixVectors: 16, pcie: true };

export interface Rig {
  readonly irqs: VfioIrqs;
  /** Events installed in the engine's fd table, `fds[i]` naming `events[i]`. */
  readonly events: readonly Event[];
  readonly fds: readonly number[];
}

/** An engine over `config` with `eventCount` fresh events installed as fds. */
export function rig(config: VfioIrqsConfig = TYPICAL_FUNCTION, eventCount = 4): Rig {
  const irqs = new VfioIrqs(config);
  const events = Array.from({ length: eventCount }, () => Event.create());
  const fds = events.map((event) => irqs.fds.install(event));
  return { irqs, events, fds };
}

/** Runs `misuse`, expects `IrqChipError(code)`, and checks that the engine's observable state did not change. */
export function assertRejectedUnchanged(irqs: VfioIrqs, code: string, misuse: () => void, what?: string): void {
  const before: VfioIrqsState = irqs.state();
  assert.throws(misuse, rejectsWith(code), what);
  assert.deepEqual(irqs.state(), before, `${what ?? 'rejected request'}: state changed`);
}

/** Reads and clears every event's count; returns which were signalled (as counts). */
export function drainCounts(events: readonly Event[]): bigint[] {
  return events.map((event) => event.tryRead());
}
