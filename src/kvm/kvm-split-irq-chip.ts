/**
 * `KvmSplitIrqChip`: the `IrqChip` whose local APICs are KVM's (KVM_CAP_SPLIT_IRQCHIP) and whose
 * 8259A pair and IOAPIC are ours (crosvm `KvmSplitIrqChip`; seed-apis.md §2.4, split column).
 *
 * - The PIC, the IOAPIC, the lines, the routing table and the events are the `LegacyIrqCore`
 *   that `UserspaceIrqChip` uses too (legacy-irq-core.ts): what differs is wiring. The IOAPIC's
 *   messages and the MSI routes we service go into KVM with KVM_SIGNAL_MSI, and KVM's GSIs 0–23
 *   mirror the IOAPIC's redirection table as level or edge MSI routes, because KVM reports the EOI
 *   of a level interrupt (KVM_EXIT_IOAPIC_EOI → `broadcastEoi`) only for vectors such routes carry
 *   (split-chip-kvm-routes.ts).
 * - Events: an edge event on a GSI from 24 up is a KVM irqfd (the kernel injects its MSI route
 *   inline) and must be an `OsEvent` (EBADF otherwise); registration returns undefined. Every
 *   other event, on the PIC/IOAPIC GSIs 0–23 or a level event anywhere, is ours: it gets an index
 *   and a token, and the service thread calls `serviceIrqEvent`. Level events need the EOI, which
 *   KVM gives only through the exit: KVM refuses a resample irqfd on a split chip (EINVAL,
 *   `kvm_arch_irqfd_allowed`), as it refuses irqchip routes.
 * - Routes: GSIs 0–23 take any route (PIC, IOAPIC, or an MSI, which we send ourselves: KVM's
 *   GSIs 0–23 are the mirror); a GSI from 24 up takes only an MSI route, which KVM also gets.
 * - The PIC's INT output is vCPU 0's LINT0. `injectInterrupts` on vCPU 0 acknowledges the PIC and
 *   hands the vector to KVM with KVM_INTERRUPT when the vCPU is ready, and asks for an interrupt
 *   window while the output stays high. KVM keeps that ExtINT until LINT0 accepts it
 *   (`kvm_cpu_has_extint`), so the run structure's ready flag already says whether LINT0 is in
 *   ExtINT mode and unmasked. A halted vCPU 0 sleeps inside KVM_RUN (HLT is the in-kernel LAPIC's),
 *   so when the output rises on another thread the chip kicks vCPU 0's thread, which `addVcpu` on
 *   that thread published.
 * - The kernel halts, wakes and runs the vCPUs: `halted`, `waitUntilRunnable` and
 *   `kickHaltedVcpus` do nothing, and MP states are KVM_GET/SET_MP_STATE on the vCPU added on the
 *   calling thread.
 *
 * Threads: as `UserspaceIrqChip`, an owner (`create`, which registers events) and views
 * (`createView` → `fromDescriptor`) sharing the controllers, the routes, the event table and KVM's
 * table. vCPU threads need a view: KVM_INTERRUPT and the MP state are vCPU ioctls of their thread.
 *
 * On this host (PVM, kvm-from-node.md §8) KVM's LAPIC ends an interrupt when it delivers it, so the
 * EOI exit comes at delivery, before the guest's handler runs: priorities and ISR are the host's,
 * and a level line still asserted is delivered again at once.
 */

import { HostClock, type Clock } from '../base/clock.ts';
import { ErrorCode, IrqChipError, check } from '../base/errors.ts';
import type { Bus } from '../chip/bus.ts';
import { placeLegacyControllersOnBuses } from '../chip/chip-bus-devices.ts';
import { decodeChipSnapshot, encodeChipSnapshot } from '../chip/chip-snapshot.ts';
import type { IrqAllocator } from '../chip/irq-allocator.ts';
import type { IrqChip, IrqEventToken } from '../chip/irq-chip.ts';
import { LegacyIrqCore, checkGsi, type ChipCounterName, type LegacyIrqCoreDescriptor, type LegacyIrqCoreWiring } from '../chip/legacy-irq-core.ts';
import type { IrqChipCap, IrqEventIndex, IrqEventSource, MPState, VcpuRunState } from '../chip/types.ts';
import type { Vcpu } from '../chip/vcpu.ts';
import type { Event } from '../event/event.ts';
import type { IrqEdgeEvent, IrqLevelEvent } from '../event/irq-event.ts';
import type { IrqRoute } from '../routing/irq-route.ts';
import { IOAPIC_PIN_COUNT, IoapicVersion, type Ioapic } from '../x86/ioapic/ioapic.ts';
import type { PicPair } from '../x86/pic/pic.ts';
import { addon } from './addon.ts';
import { KvmCap } from './kvm-abi.ts';
import { KvmChipHandles, checkKvmChipRequirements, type KvmCapName } from './kvm-chip-handles.ts';
import { irqfdEvent } from './kvm-irqfd.ts';
import { VcpuControlWord, allocateVcpuControl } from './kvm-vcpu.ts';
import { KvmVm, type KvmVmDescriptor } from './kvm-vm.ts';
import { OsEvent } from './os-event.ts';
import { SplitChipKvmRoutes, kvmMsiRoutes } from './split-chip-kvm-routes.ts';
import { kickVcpuThread } from './vcpu-kick.ts';

const CHIP_NAME = 'KvmSplitIrqChip';
/** The vCPU whose LINT0 the PIC drives (the BSP; KVM sets its LVT0 to ExtINT at RESET). */
const PIC_VCPU = 0;
/** No ExtINT vector held back. */
const NO_VECTOR = -1;
/** The container's sections: the core's, in this order. */
const SECTION_COUNT = 5;

export interface KvmSplitIrqChipOptions {
  /** vCPUs the VM will have: `addVcpu` accepts ids below this. */
  readonly vcpuCount: number;
  /** Time for the IOAPIC's storm limiter; default the host's clock. */
  readonly clock?: Clock;
  /** IOAPIC version: 0x20 (default, with the EOI register) or 0x11. */
  readonly ioapicVersion?: IoapicVersion;
}

/** What another thread needs to build a view. Carry it with `postMessage(descriptor, [descriptor.registry])`. */
export interface KvmSplitIrqChipDescriptor extends LegacyIrqCoreDescriptor {
  readonly kind: 'kvm-split-irq-chip';
  readonly vm: KvmVmDescriptor;
  readonly vcpuCount: number;
  /** KVM's routing table as pushed (split-chip-kvm-routes.ts). */
  readonly kvmRoutes: SharedArrayBuffer;
  /** Per vCPU, a control block (kvm-vcpu.ts) whose thread id `addVcpu` publishes, for kicks. */
  readonly vcpuKicks: readonly SharedArrayBuffer[];
}

/** What KVM must offer for this chip (`irqchip info` lists them per chip mode). */
export const KVM_SPLIT_CHIP_CAPS: readonly KvmCapName[] = ['SPLIT_IRQCHIP', 'SIGNAL_MSI', 'IRQFD', 'IMMEDIATE_EXIT'];

/** What one thread's chip objects share (clones share all of it). */
interface ChipParts {
  readonly kvm: KvmChipHandles;
  readonly core: LegacyIrqCore;
  readonly kvmRoutes: SplitChipKvmRoutes;
  readonly vcpuKicks: readonly Int32Array[];
  /** vCPU 0's state on its thread (see `injectInterrupts`). */
  readonly picVcpu: { heldVector: number };
}

export class KvmSplitIrqChip implements IrqChip {
  private constructor(private readonly parts: ChipParts) {}

  /**
   * Makes `vm`'s irqchip split (KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP) with 24 IOAPIC pins) and
   * builds our PIC and IOAPIC on it. Do it before creating any vCPU: KVM refuses once one exists
   * (EEXIST, as for a VM that already has an irqchip).
   */
  static create(vm: KvmVm, options: KvmSplitIrqChipOptions): KvmSplitIrqChip {
    checkKvmChipRequirements(vm, options.vcpuCount, KVM_SPLIT_CHIP_CAPS);
    try {
      vm.enableCapability(KvmCap.SPLIT_IRQCHIP, BigInt(IOAPIC_PIN_COUNT), 'KVM_CAP_SPLIT_IRQCHIP');
    } catch (error) {
      // arch/x86/kvm/x86.c kvm_vm_ioctl_enable_cap: EEXIST once a vCPU or an irqchip exists.
      if (error instanceof IrqChipError) {
        throw new IrqChipError(error.code, 'KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP) refused: create the split irqchip before any vCPU, on a VM without an irqchip');
      }
      throw error;
    }
    const vcpuKicks = Array.from({ length: options.vcpuCount }, () => allocateVcpuControl());
    const version = options.ioapicVersion ?? IoapicVersion.V20;
    const makeCore = (wiring: LegacyIrqCoreWiring): LegacyIrqCore => LegacyIrqCore.create({ ioapicVersion: version, extraWords: 0 }, wiring);
    const chip = KvmSplitIrqChip.build(vm, options.vcpuCount, SplitChipKvmRoutes.allocateWords(), vcpuKicks, makeCore, options.clock);
    chip.parts.kvmRoutes.resync();
    return chip;
  }

  /** A view of the chip on this thread (a vCPU worker), from the owner's `createView()`. */
  static fromDescriptor(descriptor: KvmSplitIrqChipDescriptor, options: { readonly clock?: Clock } = {}): KvmSplitIrqChip {
    // Descriptors arrive through postMessage: the type is a claim to check.
    const kind: unknown = descriptor.kind;
    const { kvmRoutes, vcpuKicks } = descriptor;
    check(
      kind === 'kvm-split-irq-chip' && kvmRoutes instanceof SharedArrayBuffer && Array.isArray(vcpuKicks) && vcpuKicks.every((block) => block instanceof SharedArrayBuffer),
      ErrorCode.EINVAL,
      'not a KvmSplitIrqChip descriptor',
    );
    return KvmSplitIrqChip.build(
      KvmVm.fromDescriptor(descriptor.vm),
      descriptor.vcpuCount,
      new Int32Array(kvmRoutes),
      vcpuKicks.map((block) => new Int32Array(block)),
      (wiring) => LegacyIrqCore.fromDescriptor(descriptor, wiring),
      options.clock,
    );
  }

  private static build(
    vm: KvmVm,
    vcpuCount: number,
    kvmRouteWords: Int32Array,
    vcpuKicks: readonly Int32Array[],
    makeCore: (wiring: LegacyIrqCoreWiring) => LegacyIrqCore,
    clock: Clock = new HostClock(),
  ): KvmSplitIrqChip {
    const kvm = new KvmChipHandles(vm, CHIP_NAME, vcpuCount);
    const { msiSender, vcpus } = kvm;
    const kvmRoutes = new SplitChipKvmRoutes(vm, kvmRouteWords, msiSender);
    const core = makeCore({
      clock,
      ioapicSink: kvmRoutes,
      sendMsi: (address, data) => msiSender.send(address, data),
      onPicOutput: (level) => {
        // vCPU 0's own thread injects before its next KVM_RUN anyway; another thread must wake it.
        const control = vcpuKicks[PIC_VCPU];
        if (level && control !== undefined && !vcpus.has(PIC_VCPU)) kickVcpuThread(control);
      },
    });
    kvmRoutes.attach(core);
    return new KvmSplitIrqChip({ kvm, core, kvmRoutes, vcpuKicks, picVcpu: { heldVector: NO_VECTOR } });
  }

  /**
   * A descriptor for a view on another thread (owner only). Send it with its port transferred:
   * `worker.postMessage(descriptor, [descriptor.registry])`.
   */
  createView(): KvmSplitIrqChipDescriptor {
    const { parts } = this;
    return {
      kind: 'kvm-split-irq-chip',
      vm: parts.kvm.vm.descriptor(),
      vcpuCount: parts.kvm.vcpus.count,
      ...parts.core.viewDescriptor(),
      kvmRoutes: parts.kvmRoutes.sharedWords(),
      vcpuKicks: parts.vcpuKicks.map((control) => control.buffer as SharedArrayBuffer),
    };
  }

  // -------------------------------------------------------------------------------------------
  // Our controllers, and observation
  // -------------------------------------------------------------------------------------------

  get vcpuCount(): number {
    return this.parts.kvm.vcpus.count;
  }

  get pic(): PicPair {
    return this.parts.core.pic;
  }

  get ioapic(): Ioapic {
    return this.parts.core.ioapic;
  }

  /** The counters of the lines and events (the controllers keep theirs). */
  counters(): Readonly<Record<ChipCounterName, number>> {
    return this.parts.core.counters();
  }

  /** The chip's routing table (a copy). */
  routes(): IrqRoute[] {
    return this.parts.core.routes();
  }

  /** KVM's routing table as last pushed: the IOAPIC mirror on GSIs 0–23, then the MSI routes from 24. */
  kvmRoutes(): IrqRoute[] {
    return this.parts.kvmRoutes.routes();
  }

  /** How many times KVM_SET_GSI_ROUTING was issued (each may wait for SRCU readers). */
  kvmRoutePushes(): number {
    return this.parts.kvmRoutes.pushCount();
  }

  /** An event KVM can take as an irqfd (for the device layer's `createChipEvent`). */
  createIrqEvent(): OsEvent {
    return OsEvent.create();
  }

  // -------------------------------------------------------------------------------------------
  // IrqChip: vCPUs
  // -------------------------------------------------------------------------------------------

  /**
   * Keeps `vcpu` (a `KvmVcpu`) for this thread's MP-state and injection calls, and publishes the
   * calling thread as the vCPU's for kicks. Call it on the vCPU's own thread.
   */
  addVcpu(vcpuId: number, vcpu: Vcpu): void {
    this.parts.kvm.vcpus.add(vcpuId, vcpu);
    const control = this.parts.vcpuKicks[vcpuId];
    if (control !== undefined) Atomics.store(control, VcpuControlWord.ThreadId, addon.threadId());
  }

  /**
   * vCPU 0 only (KVM's local APICs inject everything else): when the PIC's output is high and the
   * vCPU is ready (RFLAGS.IF, no interrupt shadow, no ExtINT already held by KVM, LINT0 taking
   * ExtINT: `kvm_vcpu_ready_for_interrupt_injection`), acknowledge the PIC and hand the vector to
   * KVM (KVM_INTERRUPT); request an interrupt window while the output stays high. Call it once
   * before each KVM_RUN, on vCPU 0's thread. KVM holds one ExtINT at a time and refuses a second
   * with EEXIST (x86.c `kvm_vcpu_ioctl_interrupt`: `pending_external_vector`), which a second call
   * without a KVM_RUN between would meet: the vector the PIC already gave is then kept and handed
   * over at a later call, so it is not lost.
   */
  injectInterrupts(vcpu: Vcpu): void {
    this.parts.kvm.vcpus.checkId(vcpu.id);
    if (vcpu.id !== PIC_VCPU) return;
    const { core, picVcpu } = this.parts;
    if (vcpu.readyForInterrupt()) {
      const vector = picVcpu.heldVector === NO_VECTOR ? this.acknowledgePic() : picVcpu.heldVector;
      if (vector !== NO_VECTOR) picVcpu.heldVector = handOverExtInt(vcpu, vector) ? NO_VECTOR : vector;
    }
    vcpu.setInterruptWindowRequested(picVcpu.heldVector !== NO_VECTOR || core.pic.outputLevel());
  }

  /** The INTA cycle when the PIC's output is high: the vector of its winning request; else NO_VECTOR. */
  private acknowledgePic(): number {
    const { pic } = this.parts.core;
    return pic.outputLevel() ? pic.acknowledge() : NO_VECTOR;
  }

  /** A halted vCPU sleeps inside KVM_RUN (the in-kernel LAPIC takes HLT): nothing to do. */
  halted(vcpuId: number): void {
    this.parts.kvm.vcpus.checkId(vcpuId);
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

  // -------------------------------------------------------------------------------------------
  // IrqChip: events and routes
  // -------------------------------------------------------------------------------------------

  registerEdgeIrqEvent(irq: number, event: IrqEdgeEvent, source: IrqEventSource): IrqEventIndex | undefined {
    checkGsi(irq);
    if (isKvmGsi(irq)) {
      this.parts.kvm.irqfds.assign(irq, irqfdEvent(event.getTrigger(), 'trigger', CHIP_NAME), undefined);
      return undefined;
    }
    return this.parts.core.registerEvent(irq, event.getTrigger(), undefined, source);
  }

  unregisterEdgeIrqEvent(irq: number, event: IrqEdgeEvent): void {
    checkGsi(irq);
    if (isKvmGsi(irq)) this.parts.kvm.irqfds.deassign(irq, event.getTrigger());
    else this.parts.core.unregisterEvent(irq, event.getTrigger());
  }

  /** Always ours (KVM refuses resample irqfds on a split chip): serviced through its token. */
  registerLevelIrqEvent(irq: number, event: IrqLevelEvent, source: IrqEventSource): IrqEventIndex {
    return this.parts.core.registerEvent(irq, event.getTrigger(), event.getResample(), source);
  }

  unregisterLevelIrqEvent(irq: number, event: IrqLevelEvent): void {
    this.parts.core.unregisterEvent(irq, event.getTrigger());
  }

  /** Adds a route (GsiRoutingTable rules; a GSI from 24 takes only an MSI); KVM takes its part first. */
  routeIrq(route: IrqRoute): void {
    this.parts.kvmRoutes.changeRoutes((table) => {
      table.add(route);
    });
  }

  setIrqRoutes(routes: readonly IrqRoute[]): void {
    this.parts.kvmRoutes.changeRoutes((table) => {
      table.replaceAll(routes);
    });
  }

  /** The events this chip services (not the irqfds: KVM consumes those). */
  irqEventTokens(): IrqEventToken[] {
    return this.parts.core.irqEventTokens();
  }

  // -------------------------------------------------------------------------------------------
  // IrqChip: lines and EOIs
  // -------------------------------------------------------------------------------------------

  /**
   * KVM_SIGNAL_MSI: one x86 MSI (`address` a u64 bigint, `data` a u32) without a route or a GSI.
   * Returns KVM's answer: > 0 local APICs accepted it, 0 none did, -1 it reached none (`KvmMsiSender`).
   */
  signalMsi(address: bigint, data: number): number {
    return this.parts.kvm.msiSender.send(address, data);
  }

  /** The VMM's own line on every route of `irq`: our PIC and IOAPIC pins, and MSI routes (KVM_SIGNAL_MSI). */
  serviceIrq(irq: number, level: boolean): number {
    return this.parts.core.serviceIrq(irq, level);
  }

  serviceIrqEvent(index: IrqEventIndex): void {
    this.parts.core.serviceIrqEvent(index);
  }

  processDelayedIrqEvents(): void {
    this.parts.core.processDelayedIrqEvents();
  }

  irqDelayedEventToken(): Event {
    return this.parts.core.irqDelayedEventToken();
  }

  /** KVM_EXIT_IOAPIC_EOI: the guest EOIed `vector` of a level route; our IOAPIC clears remote IRR and resamples. */
  broadcastEoi(vector: number): void {
    this.parts.core.broadcastEoi(vector);
  }

  /** When the IOAPIC's storm limiter next re-delivers (Clock ns), or undefined. */
  nextTimerDeadlineNs(): number | undefined {
    return this.parts.core.nextIoapicDeadlineNs();
  }

  /** Performs the IOAPIC's deferred re-deliveries that are due. */
  processTimers(): void {
    this.parts.core.processIoapicDeferrals();
  }

  // -------------------------------------------------------------------------------------------
  // IrqChip: the rest
  // -------------------------------------------------------------------------------------------

  /** Shares everything with this chip, on this thread. */
  tryClone(): KvmSplitIrqChip {
    return new KvmSplitIrqChip(this.parts);
  }

  /** Our PIC ports and IOAPIC window on the buses (KVM decodes the LAPIC window); the allocator moves past pin 23. */
  finalizeDevices(resources: IrqAllocator, ioBus: Bus, mmioBus: Bus): void {
    placeLegacyControllersOnBuses(this.parts.core.pic, this.parts.core.ioapic, ioBus, mmioBus);
    resources.advanceTo(IOAPIC_PIN_COUNT);
  }

  checkCapability(cap: IrqChipCap): boolean {
    return this.parts.kvm.hasCapability(cap);
  }

  // -------------------------------------------------------------------------------------------
  // Snapshots of our part
  // -------------------------------------------------------------------------------------------

  /**
   * Our part as bytes (chip-snapshot.ts): the core's sections (line sources and counters, PIC,
   * IOAPIC, routes, pending counts of the events we service, this thread's deferred assertions).
   * KVM's local APICs are the VMM's to save (KVM_GET_LAPIC per vCPU), as are the irqfds' counts.
   */
  snapshot(): Uint8Array {
    const sections = this.parts.core.snapshotSections();
    return encodeChipSnapshot([sections.lines, sections.pic, sections.ioapic, sections.routes, sections.events]);
  }

  /**
   * Restores `snapshot()` bytes into a chip configured the same way with the same registrations.
   * Everything is validated first (truncated, foreign or mismatched bytes, or routes this chip
   * refuses, throw EINVAL and change nothing); then KVM's table is pushed for the restored
   * redirection entries and routes.
   */
  restore(bytes: Uint8Array): void {
    const { core, kvmRoutes } = this.parts;
    const [lines, pic, ioapic, routes, events] = decodeChipSnapshot(bytes, SECTION_COUNT);
    const empty = new Uint8Array(0);
    const validated = core.validateSections({ lines: lines ?? empty, pic: pic ?? empty, ioapic: ioapic ?? empty, routes: routes ?? empty, events: events ?? empty });
    // Throws EINVAL or ENOSPC, before anything changes, for routes this chip refuses.
    kvmMsiRoutes(validated.routes);
    core.restoreControllers(validated);
    core.restoreTables(validated);
    kvmRoutes.resync();
  }
}

/** GSIs from 24 up are KVM's: their events are irqfds on KVM's MSI routes. */
function isKvmGsi(gsi: number): boolean {
  return gsi >= IOAPIC_PIN_COUNT;
}

/** KVM_INTERRUPT; false when KVM still holds an earlier ExtINT (EEXIST). */
function handOverExtInt(vcpu: Vcpu, vector: number): boolean {
  try {
    vcpu.interrupt(vector);
    return true;
  } catch (error) {
    if (error instanceof IrqChipError && error.code === ErrorCode.EEXIST) return false;
    throw error;
  }
}
