/**
 * Local APIC costs on the per-interrupt path: a fixed interrupt accepted into IRR, taken by the
 * vCPU (IRR → ISR) and retired by the guest's EOI, through the xAPIC page and through the x2APIC
 * EOI MSR with an EOI broadcast; and the vCPU's "anything to inject?" poll.
 */
import { VirtualClock } from '../src/base/clock.ts';
import { interruptMessage, TriggerMode, type InterruptMessage } from '../src/x86/interrupt-message.ts';
import { LocalApic } from '../src/x86/lapic/local-apic.ts';
import { timeOperation, type Benchmark, type BenchResult } from './harness.ts';

const VECTOR = 0x41;
const SVR_ENABLED = 0x1ff;
const SVR_OFFSET = 0xf0;
const EOI_OFFSET = 0xb0;
const MSR_APIC_BASE = 0x1b;
const APIC_BASE_X2APIC_BSP = 0xfee00d00n;
const MSR_X2APIC_EOI = 0x80b;

function fixedMessage(triggerMode: TriggerMode): InterruptMessage {
  return interruptMessage({ vector: VECTOR, triggerMode });
}

function enabledApic(eoiBroadcasts: { count: number }): LocalApic {
  const apic = LocalApic.create({
    busIndex: 0,
    bsp: true,
    clock: new VirtualClock(),
    eoiListener: {
      endOfInterrupt() {
        eoiBroadcasts.count++;
      },
    },
  });
  apic.mmioWrite(SVR_OFFSET, 4, SVR_ENABLED);
  return apic;
}

/** Times a full cycle and checks every acknowledge returned the vector. */
function timeCycle(name: string, cycle: () => number): BenchResult {
  let wrongVectors = 0;
  const result = timeOperation(name, () => {
    if (cycle() !== VECTOR) wrongVectors++;
  });
  if (wrongVectors !== 0) throw new Error(`${name}: ${wrongVectors} acknowledges did not return 0x${VECTOR.toString(16)}`);
  return result;
}

export const benchmarks: Benchmark[] = [
  {
    name: 'lapic: accept fixed + acknowledge + EOI',
    run() {
      const apic = enabledApic({ count: 0 });
      const message = fixedMessage(TriggerMode.Edge);
      return timeCycle('lapic: accept fixed + acknowledge + EOI', () => {
        apic.accept(message);
        const vector = apic.acknowledgeInterrupt();
        apic.mmioWrite(EOI_OFFSET, 4, 0);
        return vector;
      });
    },
  },
  {
    name: 'lapic: accept level + acknowledge + x2APIC EOI with broadcast',
    run() {
      const eoiBroadcasts = { count: 0 };
      const apic = enabledApic(eoiBroadcasts);
      apic.writeMsr(MSR_APIC_BASE, APIC_BASE_X2APIC_BSP);
      const message = fixedMessage(TriggerMode.Level);
      const result = timeCycle('lapic: accept level + acknowledge + x2APIC EOI with broadcast', () => {
        apic.accept(message);
        const vector = apic.acknowledgeInterrupt();
        apic.writeMsr(MSR_X2APIC_EOI, 0n);
        return vector;
      });
      return { ...result, detail: { eoiBroadcasts: eoiBroadcasts.count } };
    },
  },
  {
    name: 'lapic: hasInterrupt with nothing pending',
    run() {
      const apic = enabledApic({ count: 0 });
      let raised = 0;
      const result = timeOperation('lapic: hasInterrupt with nothing pending', () => {
        if (apic.hasInterrupt()) raised++;
      });
      if (raised !== 0) throw new Error('hasInterrupt reported an interrupt that was never sent');
      return result;
    },
  },
];
