/**
 * IOAPIC costs on the per-interrupt path, measured with a sink that accepts every message (the
 * LAPIC side is measured by its own benchmarks; the assert-to-LAPIC-IRR figure comes with the
 * integration).
 */
import { VirtualClock } from '../src/base/clock.ts';
import type { InterruptMessage, InterruptMessageSink } from '../src/x86/interrupt-message.ts';
import { Ioapic, IoapicMmioOffset, IoapicRegisterIndex } from '../src/x86/ioapic/ioapic.ts';
import { timeOperation, type Benchmark, type BenchResult } from './harness.ts';

const PIN = 9;
const VECTOR = 0x31;
const LEVEL_TRIGGERED = 1 << 15;
const MASKED = 1 << 16;

/** Accepts every message, as one LAPIC would, and counts them so the benchmark can check its work. */
class AcceptingSink implements InterruptMessageSink {
  delivered = 0;

  deliver(_message: InterruptMessage): number {
    this.delivered++;
    return 1;
  }
}

function writeRegister(ioapic: Ioapic, index: number, value: number): void {
  ioapic.mmioWrite(IoapicMmioOffset.RegisterSelect, 4, index);
  ioapic.mmioWrite(IoapicMmioOffset.Window, 4, value);
}

function ioapicWithEntry(low: number): { ioapic: Ioapic; sink: AcceptingSink } {
  const sink = new AcceptingSink();
  const ioapic = Ioapic.create({ sink, clock: new VirtualClock() });
  writeRegister(ioapic, IoapicRegisterIndex.RedirectionTable + 2 * PIN, low);
  return { ioapic, sink };
}

/** Times `operation`, then checks that each call sent exactly `messagesPerOperation` messages. */
function timeDelivering(
  name: string,
  sink: AcceptingSink,
  messagesPerOperation: number,
  operation: () => void,
): BenchResult {
  const opsPerSample = 100_000;
  const samples = 9;
  const result = timeOperation(name, operation, { opsPerSample, samples, warmupOps: opsPerSample });
  const expected = messagesPerOperation * opsPerSample * (samples + 1);
  if (sink.delivered !== expected) throw new Error(`${name}: ${sink.delivered} messages, expected ${expected}`);
  return { ...result, detail: { messages: sink.delivered } };
}

export const benchmarks: Benchmark[] = [
  {
    name: 'ioapic: level assert → message → EOI',
    run() {
      const { ioapic, sink } = ioapicWithEntry(VECTOR | LEVEL_TRIGGERED);
      return timeDelivering('ioapic: level assert → message → EOI', sink, 1, () => {
        ioapic.setIrq(PIN, true);
        ioapic.setIrq(PIN, false);
        ioapic.endOfInterrupt(VECTOR);
      });
    },
  },
  {
    name: 'ioapic: level held high, EOI → re-delivery',
    run() {
      const { ioapic, sink } = ioapicWithEntry(VECTOR | LEVEL_TRIGGERED);
      ioapic.setIrq(PIN, true);
      sink.delivered = 0;
      // Stays under the storm threshold: the line drops every 5 000 EOIs, which resets the count.
      let eois = 0;
      return timeDelivering('ioapic: level held high, EOI → re-delivery', sink, 1, () => {
        if (++eois % 5_000 === 0) {
          ioapic.setIrq(PIN, false);
          ioapic.endOfInterrupt(VECTOR);
          ioapic.setIrq(PIN, true);
          return;
        }
        ioapic.endOfInterrupt(VECTOR);
      });
    },
  },
  {
    name: 'ioapic: edge pulse → message',
    run() {
      const { ioapic, sink } = ioapicWithEntry(VECTOR);
      return timeDelivering('ioapic: edge pulse → message', sink, 1, () => {
        ioapic.setIrq(PIN, true);
        ioapic.setIrq(PIN, false);
      });
    },
  },
  {
    name: 'ioapic: mask + unmask RTE (IOREGSEL + IOWIN ×2)',
    run() {
      const { ioapic, sink } = ioapicWithEntry(VECTOR | LEVEL_TRIGGERED);
      return timeDelivering('ioapic: mask + unmask RTE (IOREGSEL + IOWIN ×2)', sink, 0, () => {
        writeRegister(ioapic, IoapicRegisterIndex.RedirectionTable + 2 * PIN, VECTOR | LEVEL_TRIGGERED | MASKED);
        writeRegister(ioapic, IoapicRegisterIndex.RedirectionTable + 2 * PIN, VECTOR | LEVEL_TRIGGERED);
      });
    },
  },
];
