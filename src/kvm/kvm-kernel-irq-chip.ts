/**
 * `KvmKernelIrqChip`: the `IrqChip` in which everything is KVM's (crosvm `KvmKernelIrqChip`;
 * seed-apis.md §2.4, first column): the 8259A pair, the IOAPIC, every local APIC and the PIT live
 * in the kernel, so this class only configures them.
 *
 * - Events become irqfds: an edge event's trigger is a plain irqfd (each write is an
 *   assert+deassert pulse); a level event's trigger is an irqfd with KVM_IRQFD_FLAG_RESAMPLE and
 *   its resample event the resamplefd (KVM holds the line from the write until the guest's EOI,
 *   then lowers it and signals the resamplefd; a device still asserting writes again). KVM reads
 *   and writes these fds itself, so both must be OS events (`OsEvent`): a memory event is refused
 *   with `EBADF`, the errno KVM gives for a descriptor that names no file, because a memory event
 *   has no descriptor at all. Registration returns `undefined` and `irqEventTokens()` is empty:
 *   the kernel, not a service thread, consumes the events.
 * - Routes: the chip keeps the whole table and pushes all of it with KVM_SET_GSI_ROUTING on every
 *   change (KVM has no per-entry call). It starts as KVM's own default, which KVM_CREATE_IRQCHIP
 *   installs, so nothing is pushed until the first change. `routeIrq` replaces every route of its
 *   GSI. The kernel validates the table (a GSI may not reach one controller twice, nor carry an MSI
 *   beside anything else); what it refuses throws `EINVAL` and changes nothing.
 * - `serviceIrq` is KVM_IRQ_LINE_STATUS and returns KVM's status: negative when no controller took
 *   the line (no route, or masked everywhere), 0 when coalesced, positive when delivered. On an MSI
 *   route an assert sends the message and a deassert does nothing (status -1: `kvm_set_msi`
 *   ignores level 0).
 * - `signalMsi` is KVM_SIGNAL_MSI: one MSI without a route or a GSI.
 * - `createIrqEvent` makes the device layer's events (`DeviceInterruptChip`): eventfds.
 * - MP states are KVM_GET/SET_MP_STATE on the vCPU added with `addVcpu`, which must be a
 *   `KvmVcpu`. Call them on the vCPU's own thread (a chip view from `fromDescriptor`): a vCPU
 *   ioctl waits while that vCPU is in KVM_RUN, and a halted guest stays there.
 * - What a userspace chip does per vCPU (inject, halt, wait, kick) the kernel does here, so those
 *   calls return at once.
 *
 * Route words (Int32Array over a SharedArrayBuffer, shared by every view; words 0–1 the lock):
 *   2 ...  the route list as `encodeRouteWords` writes it (count, then five words per route).
 * The lock is held across the KVM_SET_GSI_ROUTING that publishes a change, so two threads never
 * push tables out of order. Route changes are rare; the ioctl may wait for SRCU readers (ms).
 */

import { ErrorCode, IrqChipError, checkRange } from '../base/errors.ts';
import { acquireLock, allocateStateWords, LOCK_WORDS, releaseLock } from '../base/shared-state.ts';
import type { Bus } from '../chip/bus.ts';
import type { IrqAllocator } from '../chip/irq-allocator.ts';
import type { IrqChip, IrqEventToken } from '../chip/irq-chip.ts';
import type { IrqChipCap, IrqEventIndex, IrqEventSource, MPState, VcpuRunState } from '../chip/types.ts';
import type { Vcpu } from '../chip/vcpu.ts';
import type { Event } from '../event/event.ts';
import type { IrqEdgeEvent, IrqLevelEvent } from '../event/irq-event.ts';
import { defaultIrqRoutes, validateRoute, type IrqRoute } from '../routing/irq-route.ts';
import { decodeRouteWords, encodeRouteWords, routeWordCount } from '../routing/shared-routing-table.ts';
import { KVM_IOAPIC_NUM_PINS, KVM_MAX_IRQ_ROUTES, KvmIoctl } from './kvm-abi.ts';
import { KvmChipHandles, checkKvmChipRequirements, type KvmCapName } from './kvm-chip-handles.ts';
import { encodeKvmRouting } from './kvm-gsi-routing.ts';
import { irqfdEvent } from './kvm-irqfd.ts';
import { createKvmPit } from './kvm-pit.ts';
import { KvmVm, type KvmVmDescriptor } from './kvm-vm.ts';
import { OsEvent } from './os-event.ts';

export interface KvmKernelIrqChipOptions {
  /** vCPUs the VM will have: `addVcpu` accepts ids below this. */
  readonly vcpuCount: number;
}

export interface KvmKernelIrqChipDescriptor {
  readonly kind: 'kvm-kernel-irq-chip';
  readonly vm: KvmVmDescriptor;
  readonly vcpuCount: number;
  readonly routeWords: SharedArrayBuffer;
}

const CHIP_NAME = 'KvmKernelIrqChip';
const ROUTES_AT = LOCK_WORDS;

/** What KVM must offer for this chip (`irqchip info` lists them per chip mode). */
export const KVM_KERNEL_CHIP_CAPS: readonly KvmCapName[] = ['IRQCHIP', 'IRQFD', 'IRQFD_RESAMPLE', 'IRQ_INJECT_STATUS', 'PIT2', 'SIGNAL_MSI'];

/** What the chip objects of one thread share: clones share all of it; views on other threads only the VM and the route words. */
interface ChipParts {
  readonly kvm: KvmChipHandles;
  readonly routeWords: Int32Array;
  /** Scratch struct kvm_irq_level, reused: one thread uses it at a time. */
  readonly irqLevel: Int32Array;
}

export class KvmKernelIrqChip implements IrqChip {
  /** The in-kernel IOAPIC's pins. */
  readonly ioapicPins = KVM_IOAPIC_NUM_PINS;

  private constructor(private readonly parts: ChipParts) {}

  /**
   * Creates KVM's irqchip (PIC pair, IOAPIC, local APICs) and PIT on `vm`. Do it before creating
   * any vCPU: KVM refuses an irqchip once a vCPU exists (EINVAL), and refuses a second one (EEXIST).
   */
  static create(vm: KvmVm, options: KvmKernelIrqChipOptions): KvmKernelIrqChip {
    checkKvmChipRequirements(vm, options.vcpuCount, KVM_KERNEL_CHIP_CAPS);
    vm.ioctl(KvmIoctl.CREATE_IRQCHIP, 0, 'KVM_CREATE_IRQCHIP (create the chip before any vCPU)');
    createKvmPit(vm);
    const routeWords = allocateStateWords(routeWordCount(KVM_MAX_IRQ_ROUTES));
    encodeRouteWords(defaultIrqRoutes(KVM_IOAPIC_NUM_PINS), routeWords, ROUTES_AT);
    return KvmKernelIrqChip.build(vm, options.vcpuCount, routeWords);
  }

  /** A view of the chip on another thread (a vCPU worker): same VM, same routes; its own vCPUs. */
  static fromDescriptor(descriptor: KvmKernelIrqChipDescriptor): KvmKernelIrqChip {
    const { vm, vcpuCount, routeWords } = descriptor;
    // Descriptors arrive through postMessage: the type is a claim to check.
    const kind: unknown = descriptor.kind;
    if (kind !== 'kvm-kernel-irq-chip' || !(routeWords instanceof SharedArrayBuffer)) {
      throw new IrqChipError(ErrorCode.EINVAL, 'not a KvmKernelIrqChip descriptor');
    }
    return KvmKernelIrqChip.build(KvmVm.fromDescriptor(vm), vcpuCount, new Int32Array(routeWords));
  }

  private static build(vm: KvmVm, vcpuCount: number, routeWords: Int32Array): KvmKernelIrqChip {
    return new KvmKernelIrqChip({ kvm: new KvmChipHandles(vm, CHIP_NAME, vcpuCount), routeWords, irqLevel: new Int32Array(2) });
  }

  descriptor(): KvmKernelIrqChipDescriptor {
    const { kvm, routeWords } = this.parts;
    return { kind: 'kvm-kernel-irq-chip', vm: kvm.vm.descriptor(), vcpuCount: kvm.vcpus.count, routeWords: routeWords.buffer as SharedArrayBuffer };
  }

  /** The routes KVM has (or, before the first change, the default it installed itself). */
  routes(): IrqRoute[] {
    return decodeRouteWords(this.parts.routeWords, ROUTES_AT);
  }

  addVcpu(vcpuId: number, vcpu: Vcpu): void {
    this.parts.kvm.vcpus.add(vcpuId, vcpu);
  }

  // --- events: irqfds -------------------------------------------------------------------------

  registerEdgeIrqEvent(irq: number, event: IrqEdgeEvent, _source: IrqEventSource): undefined {
    this.parts.kvm.irqfds.assign(irq, irqfdEvent(event.getTrigger(), 'trigger', CHIP_NAME), undefined);
    return undefined;
  }

  unregisterEdgeIrqEvent(irq: number, event: IrqEdgeEvent): void {
    this.parts.kvm.irqfds.deassign(irq, event.getTrigger());
  }

  registerLevelIrqEvent(irq: number, event: IrqLevelEvent, _source: IrqEventSource): undefined {
    this.parts.kvm.irqfds.assign(irq, irqfdEvent(event.getTrigger(), 'trigger', CHIP_NAME), irqfdEvent(event.getResample(), 'resample', CHIP_NAME));
    return undefined;
  }

  unregisterLevelIrqEvent(irq: number, event: IrqLevelEvent): void {
    this.parts.kvm.irqfds.deassign(irq, event.getTrigger());
  }

  /**
   * A new event this chip can register: an eventfd (`OsEvent`), which KVM_IRQFD takes. The device
   * layer (`createChipEvent`) makes its irqfd and notifier events with it.
   */
  createIrqEvent(): OsEvent {
    return OsEvent.create();
  }

  /** The kernel consumes every registered event: there is nothing for a service thread to wait on. */
  irqEventTokens(): IrqEventToken[] {
    return [];
  }

  // --- routes -----------------------------------------------------------------------------------

  /** Replaces every route of `route.gsi` with this one, and pushes the table. */
  routeIrq(route: IrqRoute): void {
    validateRoute(route, this.ioapicPins);
    this.changeRoutes((routes) => [...routes.filter((existing) => existing.gsi !== route.gsi), route]);
  }

  setIrqRoutes(routes: readonly IrqRoute[]): void {
    for (const route of routes) validateRoute(route, this.ioapicPins);
    if (routes.length > KVM_MAX_IRQ_ROUTES) throw new IrqChipError(ErrorCode.ENOSPC, `KVM takes at most ${KVM_MAX_IRQ_ROUTES} routes, got ${routes.length}`);
    this.changeRoutes(() => [...routes]);
  }

  // --- lines ------------------------------------------------------------------------------------

  /** KVM_IRQ_LINE_STATUS: asserts or deasserts `irq` through KVM's routes; returns KVM's status. */
  serviceIrq(irq: number, level: boolean): number {
    checkRange(irq, 0, KVM_MAX_IRQ_ROUTES - 1, 'GSI');
    if (typeof level !== 'boolean') throw new IrqChipError(ErrorCode.EINVAL, 'level must be a boolean');
    const { kvm, irqLevel } = this.parts;
    irqLevel[0] = irq;
    irqLevel[1] = level ? 1 : 0;
    kvm.vm.ioctl(KvmIoctl.IRQ_LINE_STATUS, irqLevel, 'KVM_IRQ_LINE_STATUS');
    return irqLevel[0];
  }

  /**
   * KVM_SIGNAL_MSI: sends one x86 MSI (`address` a u64 bigint, `data` a u32; EINVAL otherwise)
   * without a route or a GSI, for an interrupt that has neither (a device's one-shot message, or
   * what an `IrqFdRoute`'s caller found with `consumePending`). Returns KVM's answer: > 0 local
   * APICs accepted it, 0 none did, -1 it reached none (`KvmMsiSender`).
   */
  signalMsi(address: bigint, data: number): number {
    return this.parts.kvm.msiSender.send(address, data);
  }

  /** Never called for this chip (it hands out no tokens); reported, and otherwise ignored, as crosvm does. */
  serviceIrqEvent(index: IrqEventIndex): void {
    process.emitWarning(`KvmKernelIrqChip.serviceIrqEvent(${index}): KVM services its irqfds itself; nothing to do`);
  }

  /** There are no IOAPIC EOI exits with KVM's IOAPIC; reported, and otherwise ignored, as crosvm does. */
  broadcastEoi(vector: number): void {
    process.emitWarning(`KvmKernelIrqChip.broadcastEoi(${vector}): KVM's IOAPIC takes EOIs in the kernel; nothing to do`);
  }

  processDelayedIrqEvents(): void {
    // Nothing is ever deferred: KVM asserts the lines.
  }

  irqDelayedEventToken(): Event | undefined {
    return undefined;
  }

  // --- vCPUs: the kernel injects, halts and wakes them ------------------------------------------

  injectInterrupts(_vcpu: Vcpu): void {
    // KVM injects from its own local APICs on every entry.
  }

  halted(_vcpuId: number): void {
    // A halted vCPU sleeps inside KVM_RUN.
  }

  waitUntilRunnable(_vcpu: Vcpu): VcpuRunState {
    return 'runnable';
  }

  waitUntilRunnableAsync(_vcpu: Vcpu): Promise<VcpuRunState> {
    return Promise.resolve('runnable');
  }

  kickHaltedVcpus(): void {
    // vCPUs halt in the kernel; kicking them out of KVM_RUN is VcpuThread.kick.
  }

  getMpState(vcpuId: number): MPState {
    return this.parts.kvm.vcpus.get(vcpuId).getMpState();
  }

  setMpState(vcpuId: number, state: MPState): void {
    this.parts.kvm.vcpus.get(vcpuId).setMpState(state);
  }

  /** Shares everything with this chip, on this thread. */
  tryClone(): KvmKernelIrqChip {
    return new KvmKernelIrqChip(this.parts);
  }

  finalizeDevices(_resources: IrqAllocator, _ioBus: Bus, _mmioBus: Bus): void {
    // KVM's controllers are not on our buses, and the allocator may hand out every GSI.
  }

  checkCapability(cap: IrqChipCap): boolean {
    return this.parts.kvm.hasCapability(cap);
  }

  // --- helpers ------------------------------------------------------------------------------------

  /** Under the route lock: computes the new table from the current one, pushes it, and records it if KVM took it. */
  private changeRoutes(change: (current: readonly IrqRoute[]) => IrqRoute[]): void {
    const { routeWords, kvm } = this.parts;
    acquireLock(routeWords);
    try {
      const routes = change(decodeRouteWords(routeWords, ROUTES_AT));
      if (routes.length > KVM_MAX_IRQ_ROUTES) throw new IrqChipError(ErrorCode.ENOSPC, `KVM takes at most ${KVM_MAX_IRQ_ROUTES} routes`);
      kvm.vm.ioctl(KvmIoctl.SET_GSI_ROUTING, encodeKvmRouting(routes), 'KVM_SET_GSI_ROUTING');
      encodeRouteWords(routes, routeWords, ROUTES_AT);
    } finally {
      releaseLock(routeWords);
    }
  }
}
