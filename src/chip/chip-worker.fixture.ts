/**
 * A vCPU worker for the chip's cross-thread tests: builds its own view of the chip, runs a SimVcpu
 * that halts when idle and sleeps in `waitUntilRunnable`, and reports the vectors it took once it
 * has taken `expected` interrupts or is kicked with nothing left to take.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Bus, IO_ADDRESS_LIMIT, MMIO_ADDRESS_LIMIT } from './bus.ts';
import { IrqAllocator } from './irq-allocator.ts';
import { SimVcpu } from './sim-vcpu.ts';
import { UserspaceIrqChip, type UserspaceIrqChipDescriptor } from './userspace-irq-chip.ts';

export interface ChipWorkerData {
  readonly chip: UserspaceIrqChipDescriptor;
  readonly vcpuId: number;
  readonly expected: number;
}

export interface ChipWorkerReply {
  readonly taken: number;
  readonly vectors: Readonly<Record<number, number>>;
  readonly interruptedWaits: number;
}

const { chip: descriptor, vcpuId, expected } = workerData as ChipWorkerData;
const chip = UserspaceIrqChip.fromDescriptor(descriptor);
const ioBus = new Bus('io', IO_ADDRESS_LIMIT);
const mmioBus = new Bus('mmio', MMIO_ADDRESS_LIMIT);
chip.finalizeDevices(new IrqAllocator(), ioBus, mmioBus);
const vcpu = new SimVcpu(vcpuId, { ioBus, mmioBus });
chip.addVcpu(vcpuId, vcpu);

const vectors: Record<number, number> = {};
let interruptedWaits = 0;
while (vcpu.taken.length < expected) {
  if (chip.waitUntilRunnable(vcpu) === 'interrupted') {
    interruptedWaits++;
    if (vcpu.runUntilIdle(chip).length === 0 && interruptedWaits > 1000) break;
    continue;
  }
  for (const vector of vcpu.runUntilIdle(chip)) vectors[vector] = (vectors[vector] ?? 0) + 1;
  vcpu.halt(chip);
}
parentPort?.postMessage({ taken: vcpu.taken.length, vectors, interruptedWaits } satisfies ChipWorkerReply);
