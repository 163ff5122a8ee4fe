/**
 * IOAPIC costs on the per-interrupt path. Most are measured with a sink that accepts every
 * message, so they are the IOAPIC's share alone; the two "→ LAPIC" figures run the real chain
 * (issue 3): the IOAPIC's sink is an `ApicBus` with real `LocalApic`s on it, and the LAPICs'
 * EOI broadcasts go back to the IOAPIC.
 */
import { VirtualClock } from '../src/base/clock.ts';
import type { InterruptMessage, InterruptMessageSink } from '../src/x86/interrupt-message.ts';
import { Ioapic, IoapicMmioOffset, IoapicRegisterIndex } from '../src/x86/ioapic/ioapic.ts';
import { ApicBus } from '../src/x86/lapic/apic-bus.ts';
import { ApicRegister, SVR_APIC_ENABLED, SVR_RESET, XAPIC_REGISTER_STRIDE } from '../src/x86/lapic/apic-registers.ts';
import { LocalApic } from '../src/x86/lapic/local-apic.ts';
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

/** Local APICs on the bus in the real-chain benchmarks, as in a small guest. */
const APIC_COUNT = 4;
const XAPIC_EOI_OFFSET = ApicRegister.EndOfInterrupt * XAPIC_REGISTER_STRIDE;
const XAPIC_SVR_OFFSET = ApicRegister.SpuriousVector * XAPIC_REGISTER_STRIDE;
/** SVR: APIC software-enabled, spurious vector 0xFF. */
const SVR_ENABLED = SVR_APIC_ENABLED | SVR_RESET;

interface RealChain {
  readonly ioapic: Ioapic;
  /** vCPU 0's local APIC, the entry's destination. */
  readonly target: LocalApic;
}

/**
 * An IOAPIC → ApicBus → LocalApic chain: `APIC_COUNT` software-enabled xAPICs on one bus, each
 * broadcasting its level EOIs to the IOAPIC, and pin `PIN` programmed with `low`. The entry's
 * high half stays 0: physical destination APIC ID 0, i.e. vCPU 0.
 */
function realChain(low: number): RealChain {
  const clock = new VirtualClock();
  const bus = ApicBus.create();
  const ioapic = Ioapic.create({ sink: bus, clock });
  const apics = Array.from({ length: APIC_COUNT }, (_, busIndex) => {
    const apic = LocalApic.create({ busIndex, bsp: busIndex === 0, clock, ipiSink: bus, eoiListener: ioapic });
    apic.mmioWrite(XAPIC_SVR_OFFSET, 4, SVR_ENABLED);
    bus.addMember(apic);
    return apic;
  });
  const target = apics[0];
  if (target === undefined) throw new Error('no APIC for vCPU 0');
  writeRegister(ioapic, IoapicRegisterIndex.RedirectionTable + 2 * PIN, low);
  return { ioapic, target };
}

/** Times `cycle`, then fails loudly if any cycle (warm-up included) reported that it went wrong. */
function timeVerifiedCycle(name: string, cycle: () => boolean): BenchResult {
  let cycles = 0;
  let failures = 0;
  const result = timeOperation(name, () => {
    cycles++;
    if (!cycle()) failures++;
  });
  if (failures !== 0) throw new Error(`${name}: ${failures} of ${cycles} cycles did not deliver and retire vector 0x${VECTOR.toString(16)}`);
  return { ...result, detail: { apics: APIC_COUNT, cycles } };
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
    name: 'ioapic assert → LAPIC IRR (real chain; INTA + EOI included)',
    run() {
      const { ioapic, target } = realChain(VECTOR);
      return timeVerifiedCycle('ioapic assert → LAPIC IRR (real chain; INTA + EOI included)', () => {
        const delivered = ioapic.setIrq(PIN, true);
        ioapic.setIrq(PIN, false);
        // Retire the vector so that the next assert sets IRR afresh instead of coalescing.
        const vector = target.acknowledgeInterrupt();
        target.mmioWrite(XAPIC_EOI_OFFSET, 4, 0);
        return delivered === 1 && vector === VECTOR;
      });
    },
  },
  {
    name: 'ioapic level assert → LAPIC → EOI broadcast → remote IRR clear',
    run() {
      const { ioapic, target } = realChain(VECTOR | LEVEL_TRIGGERED);
      return timeVerifiedCycle('ioapic level assert → LAPIC → EOI broadcast → remote IRR clear', () => {
        const delivered = ioapic.setIrq(PIN, true);
        const vector = target.acknowledgeInterrupt();
        // The device's handler quiets the line before the guest's EOI, so the EOI re-delivers nothing.
        ioapic.setIrq(PIN, false);
        target.mmioWrite(XAPIC_EOI_OFFSET, 4, 0);
        return delivered === 1 && vector === VECTOR && !ioapic.remoteIrr(PIN);
      });
    },
  },
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
    name: 'ioapic: edge pulse through trySetIrq → message',
    run() {
      const { ioapic, sink } = ioapicWithEntry(VECTOR);
      return timeDelivering('ioapic: edge pulse through trySetIrq → message', sink, 1, () => {
        ioapic.trySetIrq(PIN, true);
        ioapic.trySetIrq(PIN, false);
      });
    },
  },
  {
    name: 'ioapic: resampled level, EOI → resample → device re-asserts',
    run() {
      const { ioapic, sink } = ioapicWithEntry(VECTOR | LEVEL_TRIGGERED);
      ioapic.setPinResampled(PIN, true);
      ioapic.setResampleListener((pin) => ioapic.setIrq(pin, true));
      ioapic.setIrq(PIN, true);
      sink.delivered = 0;
      // A resampled pin never storms: each EOI lowers the line, and the re-assert delivers afresh.
      return timeDelivering('ioapic: resampled level, EOI → resample → device re-asserts', sink, 1, () => {
        ioapic.endOfInterrupt(VECTOR);
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
