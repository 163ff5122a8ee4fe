/**
 * Device-side interrupt costs on the userspace chip: a PCI function's MSI-X vector (an MSI
 * `ChipInterruptGroup` behind an `MsixCapability`, brought up as Linux does), raising interrupts
 * into two local APICs.
 *
 * - trigger: the device's `group.trigger(i)` on a live vector: the group's lock, the chip's GSI →
 *   MSI route, the APIC bus. In steady state the vector is still in the target's IRR, so the LAPIC
 *   coalesces; the full cycle adds the guest's acknowledge and EOI.
 * - mask/unmask with a pending interrupt: the guest's two DWORD writes to Vector Control around a
 *   trigger that lands while masked, so the unmask delivers the pending interrupt; with the
 *   acknowledge and EOI, so every iteration delivers afresh. A notifier-raised vector adds the
 *   irqfd disarm/re-arm (unregister/register with the chip); the chip's event table grows by one
 *   slot per re-arm (it never reuses slots), so that figure is taken over a fixed, small run.
 */
import { VirtualClock } from '../src/base/clock.ts';
import { Bus } from '../src/chip/bus.ts';
import { IrqAllocator } from '../src/chip/irq-allocator.ts';
import { UserspaceIrqChip } from '../src/chip/userspace-irq-chip.ts';
import { InterruptManager } from '../src/device/interrupt-manager.ts';
import type { ChipInterruptGroup } from '../src/device/chip-interrupt-group.ts';
import { MSIX_ENABLE, MSIX_FUNCTION_MASK, MSIX_TABLE_ENTRY_BYTES, MsixCapability, MsixEntryField } from '../src/device/msix-capability.ts';
import { DeliveryMode, DestinationMode, TriggerMode } from '../src/x86/interrupt-message.ts';
import type { LocalApic } from '../src/x86/lapic/local-apic.ts';
import { encodeMsi } from '../src/x86/msi/msi-codec.ts';
import { timeOperation, type Benchmark, type BenchResult } from './harness.ts';

const VECTORS = 4;
const TARGET_CPU = 1;
const GUEST_VECTOR = 0x41;
/** xAPIC register offsets (SDM Table 11-1). */
const MMIO_EOI = 0x0b0;
const MMIO_SPURIOUS_VECTOR = 0x0f0;
const SVR_ENABLED = 0x1ff;
const VECTOR_CONTROL = MsixEntryField.VectorControl * 4;

interface Rig {
  readonly chip: UserspaceIrqChip;
  readonly group: ChipInterruptGroup;
  readonly msix: MsixCapability;
  readonly target: LocalApic;
}

/** A two-vCPU chip and a device whose MSI-X vectors all send GUEST_VECTOR to vCPU 1, enabled and unmasked. */
function rig(): Rig {
  const chip = UserspaceIrqChip.create({ vcpuCount: 2, clock: new VirtualClock() });
  const allocator = new IrqAllocator();
  chip.finalizeDevices(allocator, new Bus('io', 0x10000), new Bus('mmio', 2 ** 52));
  for (let cpu = 0; cpu < 2; cpu++) {
    chip.setMpState(cpu, 'runnable');
    chip.localApic(cpu).mmioWrite(MMIO_SPURIOUS_VECTOR, 4, SVR_ENABLED);
  }
  const manager = new InterruptManager({ chip, gsis: allocator });
  const group = manager.createGroup('msi', 0, VECTORS);
  const msix = new MsixCapability({ group, table: { bar: 0, offset: 0 }, pba: { bar: 0, offset: 0x800 } });
  const message = encodeMsi({
    destination: TARGET_CPU,
    destinationMode: DestinationMode.Physical,
    redirectionHint: false,
    deliveryMode: DeliveryMode.Fixed,
    triggerMode: TriggerMode.Edge,
    level: true,
    vector: GUEST_VECTOR,
  });
  msix.writeConfig(2, 2, MSIX_ENABLE | MSIX_FUNCTION_MASK);
  for (let vector = 0; vector < VECTORS; vector++) {
    writeDword(msix, vector, MsixEntryField.AddressLow * 4, message.addressLow);
    writeDword(msix, vector, MsixEntryField.Data * 4, message.data);
    writeDword(msix, vector, VECTOR_CONTROL, 0);
  }
  msix.writeConfig(2, 2, MSIX_ENABLE);
  return { chip, group, msix, target: chip.localApic(TARGET_CPU) };
}

const dword = new Uint8Array(4);
const dwordView = new DataView(dword.buffer);

function writeDword(msix: MsixCapability, vector: number, offset: number, value: number): void {
  dwordView.setUint32(0, value, true);
  msix.tableWrite(vector * MSIX_TABLE_ENTRY_BYTES + offset, dword);
}

/** The guest takes the interrupt and ends it; fails the benchmark if nothing was delivered. */
function acknowledgeAndEoi(target: LocalApic): void {
  if (target.acknowledgeInterrupt() !== GUEST_VECTOR) throw new Error('the interrupt was not delivered');
  target.mmioWrite(MMIO_EOI, 4, 0);
}

function triggerCoalescing(): BenchResult {
  const { group, target } = rig();
  group.trigger(0);
  const result = timeOperation('device: MSI-X trigger → LAPIC (vector already in IRR)', () => {
    group.trigger(0);
  });
  acknowledgeAndEoi(target);
  return { ...result, detail: { path: 'group lock, GSI → MSI route, APIC bus; IRR already set (coalesced)' } };
}

function triggerFullCycle(): BenchResult {
  const { group, target } = rig();
  const result = timeOperation('device: MSI-X trigger + acknowledge + EOI', () => {
    group.trigger(0);
    acknowledgeAndEoi(target);
  });
  return { ...result, detail: { path: 'trigger, IRR set, INTA, EOI' } };
}

function maskUnmaskPending(): BenchResult {
  const { group, msix, target } = rig();
  const result = timeOperation('device: MSI-X mask + trigger (held) + unmask (delivers) + ack/EOI', () => {
    writeDword(msix, 0, VECTOR_CONTROL, 1);
    group.trigger(0);
    writeDword(msix, 0, VECTOR_CONTROL, 0);
    acknowledgeAndEoi(target);
  });
  return { ...result, detail: { path: 'guest DWORD writes to Vector Control; no routing push; the unmask delivers the pending interrupt once' } };
}

function maskUnmaskPendingNotifier(): BenchResult {
  const { group, msix, target } = rig();
  const notifier = group.notifier(1);
  const opsPerSample = 2_000;
  const samples = 5;
  const result = timeOperation(
    'device: MSI-X mask + notifier signal (held) + unmask (drain, re-arm, deliver) + ack/EOI',
    () => {
      writeDword(msix, 1, VECTOR_CONTROL, 1);
      notifier.signal();
      writeDword(msix, 1, VECTOR_CONTROL, 0);
      acknowledgeAndEoi(target);
    },
    { opsPerSample, samples, warmupOps: opsPerSample },
  );
  // Each re-arm takes a new slot in the chip's event table, and each registration scans it.
  return { ...result, detail: { path: 'irqfd disarm/re-arm = chip unregister/register', chipEventSlotsTakenByRun: opsPerSample * (samples + 1) } };
}

export const benchmarks: Benchmark[] = [
  { name: 'device: MSI-X trigger → LAPIC (vector already in IRR)', run: triggerCoalescing },
  { name: 'device: MSI-X trigger + acknowledge + EOI', run: triggerFullCycle },
  { name: 'device: MSI-X mask + trigger (held) + unmask (delivers) + ack/EOI', run: maskUnmaskPending },
  { name: 'device: MSI-X mask + notifier signal (held) + unmask (drain, re-arm, deliver) + ack/EOI', run: maskUnmaskPendingNotifier },
];
