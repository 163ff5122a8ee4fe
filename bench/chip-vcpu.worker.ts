/**
 * The vCPU side of the chip's cross-worker benchmarks (chip.bench.ts): a SimVcpu on its own view
 * of the chip that halts when idle and sleeps in `waitUntilRunnable`, as a vCPU thread does.
 *
 * Roles: 'device' takes the interrupts a device worker raises, EOIs each as the guest would and
 * signals the completion event. 'ipi-initiator' and 'ipi-responder' play IPI ping-pong: the
 * initiator sends the first IPI and, from its handler, the next one after each answer, timing
 * samples of round trips; the responder answers each IPI from its handler.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Bus } from '../src/chip/bus.ts';
import { IO_ADDRESS_LIMIT, MMIO_ADDRESS_LIMIT } from '../src/chip/bus.ts';
import { IrqAllocator } from '../src/chip/irq-allocator.ts';
import { SimVcpu, type SimGuest } from '../src/chip/sim-vcpu.ts';
import { PIC_IRQS_PER_CHIP, sendFixedIpi } from '../src/chip/stress-plan.fixture.ts';
import { UserspaceIrqChip, type UserspaceIrqChipDescriptor } from '../src/chip/userspace-irq-chip.ts';
import { Event, type EventDescriptor } from '../src/event/event.ts';

export interface ChipVcpuSetup {
  readonly chip: UserspaceIrqChipDescriptor;
  readonly vcpuId: number;
  readonly role: 'device' | 'ipi-initiator' | 'ipi-responder';
  /** The vector this vCPU must take, every time. */
  readonly vector: number;
  /** The PIC's vector bases, when the vector is the 8259A's (then the handler EOIs the PIC). */
  readonly picVectorBases: { readonly master: number; readonly slave: number } | undefined;
  /** Interrupts to take before the worker reports and stops. */
  readonly interrupts: number;
  /** 'device': signalled after each EOI. */
  readonly completion: EventDescriptor | undefined;
  /** IPI roles: the other vCPU and the vector to send it; the initiator's warm-up and samples. */
  readonly peer: { readonly vcpuId: number; readonly vector: number } | undefined;
  readonly warmupInterrupts: number;
  readonly interruptsPerSample: number;
}

export interface ChipVcpuResult {
  readonly taken: number;
  readonly wrongVectors: number;
  /** 'ipi-initiator': nanoseconds per IPI (half a round trip), one figure per sample. */
  readonly nsPerInterrupt: readonly number[];
}

const setup = workerData as ChipVcpuSetup;
const chip = UserspaceIrqChip.fromDescriptor(setup.chip);
const ioBus = new Bus('io', IO_ADDRESS_LIMIT);
const mmioBus = new Bus('mmio', MMIO_ADDRESS_LIMIT);
chip.finalizeDevices(new IrqAllocator(), ioBus, mmioBus);
const completion = setup.completion === undefined ? undefined : Event.fromDescriptor(setup.completion);
let taken = 0;
let wrongVectors = 0;
const nsPerInterrupt: number[] = [];
let sampleStart = process.hrtime.bigint();

/** The initiator times its samples from inside its handler: each answer it takes ends one round trip. */
function timeSamples(): void {
  const measured = taken - setup.warmupInterrupts;
  if (measured === 0) sampleStart = process.hrtime.bigint();
  else if (measured > 0 && measured % setup.interruptsPerSample === 0) {
    const now = process.hrtime.bigint();
    // Each round trip is two IPIs, one each way.
    nsPerInterrupt.push(Number(now - sampleStart) / setup.interruptsPerSample / 2);
    sampleStart = now;
  }
}

function handle(vector: number, guest: SimGuest): void {
  taken++;
  if (vector !== setup.vector) wrongVectors++;
  const masterBase = setup.picVectorBases?.master;
  if (masterBase !== undefined && vector >= masterBase && vector < masterBase + PIC_IRQS_PER_CHIP) guest.eoiPic(vector - masterBase);
  else guest.eoiLocalApic();
  switch (setup.role) {
    case 'device':
      completion?.signal();
      return;
    case 'ipi-responder':
      if (setup.peer !== undefined) sendFixedIpi(guest, setup.peer.vcpuId, setup.peer.vector);
      return;
    case 'ipi-initiator':
      timeSamples();
      if (setup.peer !== undefined && taken < setup.interrupts) sendFixedIpi(guest, setup.peer.vcpuId, setup.peer.vector);
  }
}

const vcpu = new SimVcpu(setup.vcpuId, { ioBus, mmioBus, handler: handle });
chip.addVcpu(setup.vcpuId, vcpu);
if (setup.role === 'ipi-initiator' && setup.peer !== undefined) sendFixedIpi(vcpu.bus, setup.peer.vcpuId, setup.peer.vector);
while (taken < setup.interrupts) {
  chip.waitUntilRunnable(vcpu);
  vcpu.runUntilIdle(chip);
  vcpu.halt(chip);
}
parentPort?.postMessage({ taken, wrongVectors, nsPerInterrupt } satisfies ChipVcpuResult);
