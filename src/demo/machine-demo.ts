/**
 * What `npm start` shows: a small simulated PC built on the real `UserspaceIrqChip`, running for a
 * bounded time on the host clock.
 *
 * This thread is the VMM: it creates the chip (the owner), routes an MSI GSI, registers the
 * devices' events, and services them as their tokens fire. Three vCPUs run on worker threads, each
 * on its own view of the chip (vcpu.worker.ts, guest.ts): vCPU 0 programs the machine through the
 * buses and starts the others with INIT-SIPI-SIPI; its LAPIC timer ticks periodically and its
 * handler sends vCPU 2 an IPI every few ticks. The devices run on another worker
 * (devices.worker.ts): a UART through the 8259A, a level-triggered NIC through the IOAPIC with
 * resampling, an MSI source through `serviceIrq`.
 *
 * Shutdown, in an order that leaves nothing in flight: the devices stop raising and the VMM waits
 * until every interrupt they raised has been taken and ended; vCPU 0 (the only source of timer
 * ticks and IPIs) is stopped, then the others (a kick after a stop request ends a vCPU's loop
 * once it has taken what is pending), then the device thread. Then the books are closed
 * (machine-report.ts). Any failure stops every worker; nothing is left running.
 */

import { setTimeout as sleep } from 'node:timers/promises';
import type { Worker } from 'node:worker_threads';
import { joinHalves } from '../base/integers.ts';
import { Bus, IO_ADDRESS_LIMIT, MMIO_ADDRESS_LIMIT } from '../chip/bus.ts';
import { IrqAllocator } from '../chip/irq-allocator.ts';
import { IrqEventService } from '../chip/irq-event-service.ts';
import { UserspaceIrqChip } from '../chip/userspace-irq-chip.ts';
import { IrqEdgeEvent, IrqLevelEvent } from '../event/irq-event.ts';
import { startTypeScriptWorker } from '../node/worker.ts';
import { msiIrqRoute } from '../routing/irq-route.ts';
import { interruptMessage } from '../x86/interrupt-message.ts';
import { DEFAULT_MIN_PERIODIC_TIMER_NS } from '../x86/lapic/local-apic.ts';
import { encodeMsi } from '../x86/msi/msi-codec.ts';
import {
  APPLICATION_PROCESSORS,
  BSP,
  DEVICE_VCPU,
  DevicePhase,
  MachineMemory,
  NIC_GSI,
  UART_IRQ,
  VCPU_COUNT,
  Vector,
  type DevicesReport,
  type DevicesWorkerData,
  type VcpuMessage,
  type VcpuReport,
  type VcpuWorkerData,
} from './machine-layout.ts';
import { summariseMachine, type MachineLedger, type MachineReport } from './machine-report.ts';

export interface MachineDemoOptions {
  /** How long the devices raise interrupts, in ms of host time (default 2000). */
  readonly durationMs?: number;
  /** The guest's LAPIC timer period in µs (default 1000); the LAPIC holds periodic timers to at least 200 µs. */
  readonly timerPeriodUs?: number;
  /** Seed of the devices' arrival schedule. */
  readonly seed?: number;
}

const DEFAULT_DURATION_MS = 2000;
const DEFAULT_TIMER_PERIOD_US = 1000;
const DEFAULT_SEED = 0x1dc;
/** TMICT is 32 bits; at divide-by-1 and 1 ns per count, that bounds the period. */
const MAX_TIMER_PERIOD_US = 1_000_000;

/** Generous bounds: worker start-up loads TypeScript; a stage that overruns them is a failure, not a hang. */
const BOOT_TIMEOUT_MS = 60_000;
const DRAIN_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 10_000;
const EXIT_GRACE_MS = 2_000;
/** The devices are settled when seen idle twice this far apart. */
const SETTLE_CONFIRM_MS = 5;

const VCPU_WORKER = new URL('./vcpu.worker.ts', import.meta.url);
const DEVICES_WORKER = new URL('./devices.worker.ts', import.meta.url);

/** A worker and the messages it sent that nobody has taken yet. */
class WorkerInbox<Message> {
  private readonly messages: Message[] = [];
  private failure: Error | undefined;
  private hasExited = false;
  private wake: (() => void) | undefined;
  readonly exited: Promise<number>;

  constructor(
    readonly name: string,
    readonly worker: Worker,
  ) {
    worker.on('message', (message: Message) => {
      this.messages.push(message);
      this.wake?.();
    });
    worker.on('error', (error) => {
      this.failure = error;
      this.wake?.();
    });
    this.exited = new Promise((resolve) => {
      worker.once('exit', (code) => {
        this.hasExited = true;
        if (code !== 0) this.failure ??= new Error(`${name} exited with code ${code}`);
        this.wake?.();
        resolve(code);
      });
    });
  }

  /** Throws the worker's error (or its non-zero exit) if it had one. */
  throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  /** The next message; rejects if the worker fails or exits first, or after `timeoutMs`. */
  async next(timeoutMs: number): Promise<Message> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const message = this.messages.shift();
      if (message !== undefined) return message;
      this.throwIfFailed();
      if (this.hasExited) throw new Error(`${this.name} exited without a report`);
      const remaining = deadline - performance.now();
      if (remaining <= 0) throw new Error(`${this.name}: no message within ${timeoutMs} ms`);
      const controller = new AbortController();
      await Promise.race([
        new Promise<void>((resolve) => (this.wake = resolve)),
        sleep(remaining, undefined, { signal: controller.signal }).catch(() => undefined),
      ]);
      controller.abort();
      this.wake = undefined;
    }
  }
}

export async function runMachineDemo(options: MachineDemoOptions = {}): Promise<MachineReport> {
  const durationMs = options.durationMs ?? DEFAULT_DURATION_MS;
  const timerPeriodUs = options.timerPeriodUs ?? DEFAULT_TIMER_PERIOD_US;
  if (!(durationMs > 0)) throw new RangeError('durationMs must be positive');
  if (!Number.isInteger(timerPeriodUs) || timerPeriodUs < 1 || timerPeriodUs > MAX_TIMER_PERIOD_US) {
    throw new RangeError(`timerPeriodUs must be an integer from 1 to ${MAX_TIMER_PERIOD_US}`);
  }
  const machine = buildMachine();
  const vcpus = Array.from({ length: VCPU_COUNT }, (_, vcpuId) => {
    const data: VcpuWorkerData = { chip: machine.chip.createView(), memory: machine.memory.buffer, vcpuId, timerPeriodNs: timerPeriodUs * 1000 };
    return new WorkerInbox<VcpuMessage>(`vCPU ${vcpuId}`, startTypeScriptWorker(VCPU_WORKER, { workerData: data, transferList: [data.chip.registry] }));
  });
  const devicesData: DevicesWorkerData = {
    chip: machine.chip.createView(),
    memory: machine.memory.buffer,
    uart: machine.uart.descriptor(),
    nic: machine.nic.descriptor(),
    msiGsi: machine.msiGsi,
    seed: options.seed ?? DEFAULT_SEED,
  };
  const devices = new WorkerInbox<DevicesReport>(
    'device thread',
    startTypeScriptWorker(DEVICES_WORKER, { workerData: devicesData, transferList: [devicesData.chip.registry] }),
  );
  const workers = [...vcpus, devices];

  const service = new IrqEventService(machine.chip);
  service.start();
  /** Throws what went wrong on another thread or in the service loop, so no stage waits for it in vain. */
  const checkHealthy = (): void => {
    const serviceFailure = service.failure();
    if (serviceFailure !== undefined) throw serviceFailure;
    for (const worker of workers) worker.throwIfFailed();
  };
  try {
    const booted = expectMessage(await inbox(vcpus, BSP).next(BOOT_TIMEOUT_MS), 'booted');
    machine.memory.setDevicePhase(DevicePhase.Running);
    await sleep(durationMs);
    checkHealthy();
    machine.memory.setDevicePhase(DevicePhase.Draining);
    await waitUntilSettled(machine, checkHealthy);

    // vCPU 0 first: it is the source of the timer's ticks and of the IPIs.
    const bspReport = await stopVcpus(machine, vcpus, [BSP]);
    // The timer's books: its deadline advanced by one period per expiry collected, and nothing collects it now.
    const lastDeadlineNs = machine.chip.localApic(BSP).nextTimerDeadlineNs() ?? booted.firstTimerDeadlineNs;
    const apReports = await stopVcpus(machine, vcpus, APPLICATION_PROCESSORS);
    machine.memory.setDevicePhase(DevicePhase.Exit);
    const devicesReport = await devices.next(STOP_TIMEOUT_MS);
    await service.stop();
    checkHealthy();

    const timerPeriodNs = Math.max(timerPeriodUs * 1000, DEFAULT_MIN_PERIODIC_TIMER_NS);
    const ledger: MachineLedger = {
      durationMs,
      timerPeriodRequestedNs: timerPeriodUs * 1000,
      timerPeriodNs,
      timerPeriodsElapsed: (lastDeadlineNs - booted.firstTimerDeadlineNs) / timerPeriodNs,
      msiGsi: machine.msiGsi,
      vcpus: [...bspReport, ...apReports],
      devices: devicesReport,
      chip: machine.chip.counters(),
      pic: machine.chip.pic.counters(),
      ioapic: machine.chip.ioapic.counters(),
      localApics: Array.from({ length: VCPU_COUNT }, (_, vcpu) => machine.chip.localApic(vcpu).counters()),
      nicCompleted: machine.memory.nicCompleted(),
      nicPending: machine.memory.nicPending(),
      leftPending: pendingInterrupts(machine.chip),
    };
    return summariseMachine(ledger);
  } finally {
    await service.stop();
    await shutDown(machine, workers);
  }
}

interface Machine {
  readonly chip: UserspaceIrqChip;
  readonly memory: MachineMemory;
  readonly uart: IrqEdgeEvent;
  readonly nic: IrqLevelEvent;
  readonly msiGsi: number;
}

/**
 * The VMM's part of building the machine: the chip on its buses, a GSI for the MSI (≥ 24, from the
 * allocator the chip advanced past the IOAPIC's pins) routed to vCPU 1, and the devices' events.
 */
function buildMachine(): Machine {
  const chip = UserspaceIrqChip.create({ vcpuCount: VCPU_COUNT });
  const allocator = new IrqAllocator();
  chip.finalizeDevices(allocator, new Bus('io', IO_ADDRESS_LIMIT), new Bus('mmio', MMIO_ADDRESS_LIMIT));
  const msiGsi = allocator.allocate();
  const msi = encodeMsi(interruptMessage({ destination: DEVICE_VCPU, vector: Vector.Msi }));
  chip.routeIrq(msiIrqRoute(msiGsi, joinHalves(msi.addressLow, msi.addressHigh), msi.data));
  const uart = new IrqEdgeEvent();
  const nic = new IrqLevelEvent();
  chip.registerEdgeIrqEvent(UART_IRQ, uart, { deviceId: 1, queueId: 0, deviceName: 'uart' });
  chip.registerLevelIrqEvent(NIC_GSI, nic, { deviceId: 2, queueId: 0, deviceName: 'nic' });
  return { chip, memory: new MachineMemory(), uart, nic, msiGsi };
}

/** Waits until the devices are idle and nothing they raised is still on its way or in service. */
async function waitUntilSettled(machine: Machine, checkHealthy: () => void): Promise<void> {
  const deadline = performance.now() + DRAIN_TIMEOUT_MS;
  let confirmations = 0;
  while (confirmations < 2) {
    checkHealthy();
    if (performance.now() > deadline) throw new Error(`the devices did not settle within ${DRAIN_TIMEOUT_MS} ms: ${inFlight(machine).join(', ')}`);
    confirmations = inFlight(machine).length === 0 ? confirmations + 1 : 0;
    await sleep(SETTLE_CONFIRM_MS);
  }
}

/** What the devices raised that has not been ended yet (the timer and the IPIs are stopped separately). */
function inFlight(machine: Machine): string[] {
  const { chip, memory } = machine;
  const reasons: string[] = [];
  if (!memory.devicesIdle()) reasons.push('a device is busy');
  if (chip.irqEventTokens().some((token) => token.event.readCount() !== 0n)) reasons.push('an event awaits service');
  if (chip.irqDelayedEventToken().readCount() !== 0n) reasons.push('a deferred assertion awaits retry');
  reasons.push(...pendingInterrupts(chip, [Vector.Timer, Vector.Ipi]));
  return reasons;
}

/** Interrupts requested or in service anywhere in the chip; `ignoredVectors` are left out. */
function pendingInterrupts(chip: UserspaceIrqChip, ignoredVectors: readonly number[] = []): string[] {
  const pending: string[] = [];
  for (const pic of [0, 1] as const) {
    const registers = chip.pic.registers(pic);
    if (registers.irr !== 0 || registers.isr !== 0) pending.push(`8259A ${pic === 0 ? 'master' : 'slave'} IRR/ISR ${registers.irr}/${registers.isr}`);
  }
  if (chip.ioapic.remoteIrr(NIC_GSI)) pending.push(`IOAPIC pin ${NIC_GSI} awaits its EOI`);
  const vectors = [Vector.Timer, Vector.Ipi, Vector.Nic, Vector.Msi].filter((vector) => !ignoredVectors.includes(vector));
  for (let vcpu = 0; vcpu < VCPU_COUNT; vcpu++) {
    const apic = chip.localApic(vcpu);
    for (const vector of vectors) {
      if (apic.irr(vector) || apic.isr(vector)) pending.push(`vCPU ${vcpu} vector 0x${vector.toString(16)} ${apic.isr(vector) ? 'in service' : 'requested'}`);
    }
  }
  return pending;
}

/** Asks these vCPUs to stop, kicks every vCPU, and collects their reports. */
async function stopVcpus(machine: Machine, vcpus: readonly WorkerInbox<VcpuMessage>[], ids: readonly number[]): Promise<VcpuReport[]> {
  for (const id of ids) machine.memory.requestVcpuStop(id);
  machine.chip.kickHaltedVcpus();
  return Promise.all(ids.map(async (id) => expectMessage(await inbox(vcpus, id).next(STOP_TIMEOUT_MS), 'report').report));
}

function inbox(vcpus: readonly WorkerInbox<VcpuMessage>[], id: number): WorkerInbox<VcpuMessage> {
  const found = vcpus[id];
  if (found === undefined) throw new Error(`no vCPU ${id}`);
  return found;
}

function expectMessage<Kind extends VcpuMessage['kind']>(message: VcpuMessage, kind: Kind): Extract<VcpuMessage, { kind: Kind }> {
  if (message.kind === 'failed') throw new Error(`a vCPU failed: ${message.reason}`);
  if (message.kind !== kind) throw new Error(`expected '${kind}' from a vCPU, got '${message.kind}'`);
  return message as Extract<VcpuMessage, { kind: Kind }>;
}

/** After a failure too: every vCPU and the devices told to stop, vCPUs kicked, stragglers terminated. */
async function shutDown(machine: Machine, workers: readonly WorkerInbox<unknown>[]): Promise<void> {
  for (let vcpu = 0; vcpu < VCPU_COUNT; vcpu++) machine.memory.requestVcpuStop(vcpu);
  machine.memory.setDevicePhase(DevicePhase.Exit);
  machine.chip.kickHaltedVcpus();
  await Promise.all(workers.map((worker) => exitOrTerminate(worker)));
}

async function exitOrTerminate(inbox: WorkerInbox<unknown>): Promise<void> {
  const controller = new AbortController();
  const exited = await Promise.race([
    inbox.exited.then(() => true),
    sleep(EXIT_GRACE_MS, false, { signal: controller.signal }).catch(() => false),
  ]);
  controller.abort();
  if (!exited) await inbox.worker.terminate();
}

