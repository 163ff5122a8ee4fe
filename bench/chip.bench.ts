/**
 * End-to-end interrupt rates through the `UserspaceIrqChip` (issue 4): one interrupt from the
 * device's event to the guest's handler and back (its EOI, and for a level interrupt the resample
 * the EOI signals), for an edge through the IOAPIC, a level through the IOAPIC, an MSI, the 8259A
 * through LINT0 (ExtINT), and a fixed IPI between two vCPUs.
 *
 * Each runs two ways. On one thread: the device triggers and services its event and a SimVcpu
 * steps on the same thread; a figure is the whole path's cost. Across workers: the device (trigger
 * and `serviceIrqEvent` on its own view) and the vCPU (a SimVcpu halting in `waitUntilRunnable`)
 * are worker threads, one interrupt in flight at a time, so a figure is a round trip that wakes
 * the vCPU and then the device (for the IPI, the two vCPUs wake each other; the figure is one IPI,
 * half a round trip). Every benchmark checks that each interrupt arrived, with its vector, and
 * fails otherwise.
 */
import type { Worker } from 'node:worker_threads';
import { makeMachine, programIoapicPin, type TestMachine } from '../src/chip/chip-test-support.ts';
import { sendFixedIpi, msiAddressFor } from '../src/chip/stress-plan.fixture.ts';
import type { UserspaceIrqChip } from '../src/chip/userspace-irq-chip.ts';
import { Event } from '../src/event/event.ts';
import { IrqEdgeEvent, IrqLevelEvent } from '../src/event/irq-event.ts';
import { startTypeScriptWorker } from '../src/node/worker.ts';
import { IrqSourceChip, msiIrqRoute } from '../src/routing/irq-route.ts';
import type { ChipDeviceResult, ChipDeviceSetup } from './chip-device.worker.ts';
import type { ChipVcpuResult, ChipVcpuSetup } from './chip-vcpu.worker.ts';
import { summarise, timeOperation, type Benchmark, type BenchResult } from './harness.ts';

const DEVICE_WORKER = new URL('./chip-device.worker.ts', import.meta.url);
const VCPU_WORKER = new URL('./chip-vcpu.worker.ts', import.meta.url);

const PIC_VECTOR_BASES = { master: 0x20, slave: 0x28 } as const;
const ONE_THREAD = { opsPerSample: 20_000, samples: 9, warmupOps: 20_000 } as const;
const ACROSS_WORKERS = { warmupInterrupts: 500, interruptsPerSample: 1_000, samples: 7 } as const;
const ACROSS_WORKERS_TOTAL = ACROSS_WORKERS.warmupInterrupts + ACROSS_WORKERS.interruptsPerSample * ACROSS_WORKERS.samples;
/** A cross-worker run that has not finished by then lost an interrupt (or hangs): it fails. */
const ACROSS_WORKERS_TIMEOUT_MS = 120_000;
const NS_PER_US = 1_000;
const SOURCE = { deviceId: 1, queueId: 0, deviceName: 'bench-device' };

/** One device interrupt path: how the guest programs it, and what the vCPU must take. */
interface Scenario {
  readonly name: string;
  readonly gsi: number;
  readonly level: boolean;
  readonly vector: number;
  readonly vcpuId: number;
  /** The guest's (and the VMM's) setup of the path on a fresh machine. */
  install(machine: TestMachine): void;
}

const EDGE_VECTOR = 0x40;
const LEVEL_VECTOR = 0x41;
const MSI_VECTOR = 0x42;
const IPI_VECTOR = 0x43;
const IPI_REPLY_VECTOR = 0x44;
const PIC_IRQ = 3;
const PIC_IMR_ONLY_IRQ3 = ~(1 << PIC_IRQ) & 0xff;

const SCENARIOS: readonly Scenario[] = [
  {
    name: 'edge through the IOAPIC',
    gsi: 16,
    level: false,
    vector: EDGE_VECTOR,
    vcpuId: 1,
    install: (machine) => {
      programIoapicPin(machine, 16, { vector: EDGE_VECTOR, destination: 1 });
    },
  },
  {
    name: 'level through the IOAPIC, EOI + resample',
    gsi: 17,
    level: true,
    vector: LEVEL_VECTOR,
    vcpuId: 1,
    install: (machine) => {
      programIoapicPin(machine, 17, { vector: LEVEL_VECTOR, level: true, destination: 1 });
    },
  },
  {
    name: 'MSI',
    gsi: 24,
    level: false,
    vector: MSI_VECTOR,
    vcpuId: 1,
    install: (machine) => {
      machine.chip.routeIrq(msiIrqRoute(24, msiAddressFor(1), MSI_VECTOR));
    },
  },
  {
    name: '8259A through LINT0 (ExtINT)',
    gsi: PIC_IRQ,
    level: false,
    vector: PIC_VECTOR_BASES.master + PIC_IRQ,
    vcpuId: 0,
    install: (machine) => {
      // The PIC alone: the default table also routes GSI 3 to a (masked) IOAPIC pin.
      machine.chip.setIrqRoutes([{ gsi: PIC_IRQ, source: { kind: 'irqchip', chip: IrqSourceChip.PicPrimary, pin: PIC_IRQ } }]);
      vcpuOf(machine, 0).bus.outb(0x21, PIC_IMR_ONLY_IRQ3);
    },
  },
];

function newMachine(): TestMachine {
  const machine = makeMachine({ vcpuCount: 2 }, { picVectorBases: PIC_VECTOR_BASES });
  machine.chip.setMpState(1, 'runnable');
  return machine;
}

function vcpuOf(machine: TestMachine, id: number): TestMachine['vcpus'][number] {
  const vcpu = machine.vcpus[id];
  if (vcpu === undefined) throw new Error(`no vCPU ${id}`);
  return vcpu;
}

function registerEvent(chip: UserspaceIrqChip, scenario: Scenario): { event: IrqEdgeEvent | IrqLevelEvent; index: number } {
  if (scenario.level) {
    const event = new IrqLevelEvent();
    return { event, index: chip.registerLevelIrqEvent(scenario.gsi, event, SOURCE) };
  }
  const event = new IrqEdgeEvent();
  return { event, index: chip.registerEdgeIrqEvent(scenario.gsi, event, SOURCE) };
}

/** Nanoseconds to microseconds, to the harness's three decimals. */
function microseconds(ns: number): number {
  return Math.round(ns) / NS_PER_US;
}

/** A one-thread figure in microseconds per interrupt, with the rate and the checked count. */
function perInterrupt(result: BenchResult, interrupts: number): BenchResult {
  return {
    ...result,
    unit: 'us/interrupt',
    median: microseconds(result.median),
    min: microseconds(result.min),
    max: microseconds(result.max),
    detail: { interruptsPerSecond: Math.round(1e9 / result.median), interruptsChecked: interrupts },
  };
}

/** Times `cycle` (one interrupt), then fails loudly if any cycle, warm-up included, did not deliver it. */
function timeInterrupts(name: string, cycle: () => boolean): BenchResult {
  let cycles = 0;
  let failures = 0;
  const result = timeOperation(
    name,
    () => {
      cycles++;
      if (!cycle()) failures++;
    },
    ONE_THREAD,
  );
  if (failures !== 0) throw new Error(`${name}: ${failures} of ${cycles} interrupts did not arrive as expected`);
  return perInterrupt(result, cycles);
}

function deviceOnOneThread(scenario: Scenario): BenchResult {
  const machine = newMachine();
  scenario.install(machine);
  const { chip } = machine;
  const { event, index } = registerEvent(chip, scenario);
  const vcpu = vcpuOf(machine, scenario.vcpuId);
  return timeInterrupts(`chip: ${scenario.name}, one thread`, () => {
    event.trigger();
    chip.serviceIrqEvent(index);
    const vector = vcpu.step(chip);
    // A level interrupt is done when its EOI has lowered the line and signalled the resample.
    const resampled = !(event instanceof IrqLevelEvent) || event.clearResample();
    return vector === scenario.vector && resampled;
  });
}

function ipiOnOneThread(): BenchResult {
  const machine = newMachine();
  const sender = vcpuOf(machine, 0);
  const receiver = vcpuOf(machine, 1);
  return timeInterrupts('chip: fixed IPI vCPU 0 → vCPU 1, one thread', () => {
    sendFixedIpi(sender.bus, 1, IPI_VECTOR);
    return receiver.step(machine.chip) === IPI_VECTOR;
  });
}

// ---------------------------------------------------------------------------------------------
// Across workers
// ---------------------------------------------------------------------------------------------

function resultOf<T>(worker: Worker): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => {
      reject(new Error(`worker exited (code ${code}) before reporting`));
    });
  });
}

/** Waits for every worker's report; past the time limit, or on an error, terminates them all and fails. */
async function reportsOf<T extends unknown[]>(name: string, workers: readonly Worker[], reports: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`${name}: no result within ${ACROSS_WORKERS_TIMEOUT_MS} ms (an interrupt was lost, or a thread hangs)`));
    }, ACROSS_WORKERS_TIMEOUT_MS);
  });
  try {
    return await Promise.race([reports, timeout]);
  } finally {
    clearTimeout(timer);
    await Promise.all(workers.map((worker) => worker.terminate()));
  }
}

function startVcpu(chip: UserspaceIrqChip, setup: Omit<ChipVcpuSetup, 'chip'>): Worker {
  const view = chip.createView();
  return startTypeScriptWorker(VCPU_WORKER, { workerData: { ...setup, chip: view } satisfies ChipVcpuSetup, transferList: [view.registry] });
}

function expectEqual(actual: number, expected: number, what: string): void {
  if (actual !== expected) throw new Error(`${what}: ${actual}, expected ${expected}`);
}

function acrossWorkersResult(name: string, nsPerInterrupt: readonly number[], detail: Readonly<Record<string, number>>): BenchResult {
  const result = summarise(name, 'us/interrupt', nsPerInterrupt.map((ns) => ns / NS_PER_US), ACROSS_WORKERS.interruptsPerSample, detail);
  return { ...result, detail: { ...detail, interruptsPerSecond: Math.round(1e6 / result.median) } };
}

async function deviceAcrossWorkers(scenario: Scenario): Promise<BenchResult> {
  const name = `chip: ${scenario.name}, device and vCPU workers`;
  const machine = newMachine();
  scenario.install(machine);
  const { chip } = machine;
  const { event, index } = registerEvent(chip, scenario);
  // The vCPU's handler signals this after its EOI; a level interrupt's resample says the same.
  const completion = scenario.level ? undefined : Event.create().descriptor();
  const vcpuWorker = startVcpu(chip, {
    vcpuId: scenario.vcpuId,
    role: 'device',
    vector: scenario.vector,
    picVectorBases: scenario.vcpuId === 0 ? PIC_VECTOR_BASES : undefined,
    interrupts: ACROSS_WORKERS_TOTAL,
    completion,
    peer: undefined,
    warmupInterrupts: 0,
    interruptsPerSample: 0,
  });
  const deviceView = chip.createView();
  const deviceSetup: ChipDeviceSetup = { chip: deviceView, event: event.descriptor(), index, completion, ...ACROSS_WORKERS };
  const deviceWorker = startTypeScriptWorker(DEVICE_WORKER, { workerData: deviceSetup, transferList: [deviceView.registry] });
  const [device, vcpu] = await reportsOf(name, [deviceWorker, vcpuWorker], Promise.all([resultOf<ChipDeviceResult>(deviceWorker), resultOf<ChipVcpuResult>(vcpuWorker)]));
  expectEqual(device.raised, ACROSS_WORKERS_TOTAL, `${name}: interrupts raised`);
  expectEqual(vcpu.taken, ACROSS_WORKERS_TOTAL, `${name}: interrupts the guest took`);
  expectEqual(vcpu.wrongVectors, 0, `${name}: interrupts with another vector`);
  const counters = chip.counters();
  expectEqual(counters.edgeEventsServiced + counters.levelEventsServiced, ACROSS_WORKERS_TOTAL, `${name}: events serviced`);
  return acrossWorkersResult(name, device.nsPerInterrupt, { interruptsChecked: vcpu.taken });
}

async function ipiAcrossWorkers(): Promise<BenchResult> {
  const name = 'chip: fixed IPI between two vCPU workers';
  const machine = newMachine();
  const { chip } = machine;
  const common = { role: 'ipi-responder', picVectorBases: undefined, interrupts: ACROSS_WORKERS_TOTAL, completion: undefined, ...ACROSS_WORKERS } as const;
  const responder = startVcpu(chip, { ...common, vcpuId: 1, vector: IPI_VECTOR, peer: { vcpuId: 0, vector: IPI_REPLY_VECTOR } });
  const initiator = startVcpu(chip, { ...common, role: 'ipi-initiator', vcpuId: 0, vector: IPI_REPLY_VECTOR, peer: { vcpuId: 1, vector: IPI_VECTOR } });
  const [first, second] = await reportsOf(name, [initiator, responder], Promise.all([resultOf<ChipVcpuResult>(initiator), resultOf<ChipVcpuResult>(responder)]));
  for (const [side, result] of [['initiator', first], ['responder', second]] as const) {
    expectEqual(result.taken, ACROSS_WORKERS_TOTAL, `${name}: IPIs the ${side} took`);
    expectEqual(result.wrongVectors, 0, `${name}: IPIs with another vector (${side})`);
  }
  expectEqual(chip.localApic(0).counters().coalescedInterrupts + chip.localApic(1).counters().coalescedInterrupts, 0, `${name}: coalesced IPIs`);
  return acrossWorkersResult(name, first.nsPerInterrupt, { interruptsChecked: first.taken + second.taken });
}

export const benchmarks: Benchmark[] = [
  ...SCENARIOS.map((scenario) => ({ name: `chip: ${scenario.name}, one thread`, run: () => deviceOnOneThread(scenario) })),
  { name: 'chip: fixed IPI vCPU 0 → vCPU 1, one thread', run: ipiOnOneThread },
  ...SCENARIOS.map((scenario) => ({ name: `chip: ${scenario.name}, device and vCPU workers`, run: () => deviceAcrossWorkers(scenario) })),
  { name: 'chip: fixed IPI between two vCPU workers', run: ipiAcrossWorkers },
];
