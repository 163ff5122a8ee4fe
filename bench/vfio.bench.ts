/**
 * VFIO interrupt engine costs: the per-interrupt paths (an MSI-X message to a bound trigger, one
 * INTx level cycle through automask and the unmask eventfd) and the configuration path (one
 * SET_IRQS re-binding a vector: decode, validate, apply; and a 256-vector enable, as openvmm sends).
 */
import { IrqLevelEvent } from '../src/event/irq-event.ts';
import { Event } from '../src/event/event.ts';
import { VfioIrqs } from '../src/vfio/vfio-irqs.ts';
import {
  irqSetEventfds,
  irqSetNone,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_UNMASK,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSIX_IRQ_INDEX,
} from '../src/vfio/vfio-uapi.ts';
import { timeOperation, type Benchmark, type BenchResult } from './harness.ts';

const TABLE_SIZE = 256;
const VECTOR = 3;

function device(): VfioIrqs {
  return new VfioIrqs({ intx: true, msiVectors: 1, msixVectors: TABLE_SIZE, pcie: true });
}

/** Fails the benchmark loudly if the path it measures does not do what it claims. */
function expectCount(actual: bigint, expected: bigint, what: string): void {
  if (actual !== expected) throw new Error(`${what}: counted ${actual}, expected ${expected}`);
}

function msixRaise(): BenchResult {
  const irqs = device();
  const trigger = Event.create();
  const fd = irqs.fds.install(trigger);
  // Enables vectors 0..VECTOR, binding only VECTOR.
  irqs.setIrqs(irqSetEventfds(VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, Array<number>(VECTOR + 1).fill(-1).fill(fd, VECTOR)));
  irqs.raise(VFIO_PCI_MSIX_IRQ_INDEX, VECTOR);
  expectCount(trigger.tryRead(), 1n, 'first raise');
  return timeOperation('vfio: MSI-X raise to a bound vector', () => {
    irqs.raise(VFIO_PCI_MSIX_IRQ_INDEX, VECTOR);
  });
}

function intxCycle(): BenchResult {
  const irqs = device();
  const level = new IrqLevelEvent();
  irqs.setIrqs(irqSetEventfds(VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_INTX_IRQ_INDEX, 0, [irqs.fds.install(level.getTrigger())]));
  irqs.setIrqs(irqSetEventfds(VFIO_IRQ_SET_ACTION_UNMASK, VFIO_PCI_INTX_IRQ_INDEX, 0, [irqs.fds.install(level.getResample())]));
  const cycle = (): void => {
    irqs.raiseIntx();
    level.clearTrigger();
    irqs.lowerIntx();
    level.triggerResample();
    irqs.serviceIrqfds();
  };
  cycle();
  irqs.raiseIntx();
  expectCount(level.getTrigger().tryRead(), 1n, 'raise after a full cycle');
  irqs.lowerIntx();
  level.triggerResample();
  irqs.serviceIrqfds();
  const result = timeOperation('vfio: INTx cycle (assert, automask, de-assert, resample, unmask)', cycle);
  return { ...result, detail: { path: 'raiseIntx, clearTrigger, lowerIntx, triggerResample, serviceIrqfds' } };
}

function rebindOneVector(): BenchResult {
  const irqs = device();
  const fds = [Event.create(), Event.create()].map((event) => irqs.fds.install(event));
  irqs.setIrqs(irqSetEventfds(VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, Array<number>(TABLE_SIZE).fill(-1)));
  const requests = fds.map((fd) => irqSetEventfds(VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, VECTOR, [fd]));
  let turn = 0;
  return timeOperation('vfio: SET_IRQS re-bind one MSI-X vector (decode, validate, apply)', () => {
    irqs.setIrqs(requests[turn & 1] ?? new Uint8Array(0));
    turn++;
  });
}

function enableAndDisable256(): BenchResult {
  const irqs = device();
  const fd = irqs.fds.install(Event.create());
  const enable = irqSetEventfds(VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, Array<number>(TABLE_SIZE).fill(fd));
  const disable = irqSetNone(VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 0);
  const result = timeOperation(
    'vfio: SET_IRQS enable 256 MSI-X vectors + disable',
    () => {
      irqs.setIrqs(enable);
      irqs.setIrqs(disable);
    },
    { opsPerSample: 2_000 },
  );
  return { ...result, detail: { vectors: TABLE_SIZE } };
}

export const benchmarks: Benchmark[] = [
  { name: 'vfio: MSI-X raise to a bound vector', run: msixRaise },
  { name: 'vfio: INTx cycle (assert, automask, de-assert, resample, unmask)', run: intxCycle },
  { name: 'vfio: SET_IRQS re-bind one MSI-X vector (decode, validate, apply)', run: rebindOneVector },
  { name: 'vfio: SET_IRQS enable 256 MSI-X vectors + disable', run: enableAndDisable256 },
];
