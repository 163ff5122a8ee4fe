/**
 * `VfioIrqs`: the kernel side of VFIO_DEVICE_SET_IRQS and VFIO_DEVICE_GET_IRQ_INFO for one PCI
 * function, as vfio-pci implements them (Linux `drivers/vfio/pci/vfio_pci_intrs.c` and
 * `vfio_pci_core.c`, 6.9+ with the persistent INTx handler; seed-apis.md §5, §6 items 13–17).
 * It backs emulated devices and is the reference the real `/dev/vfio` path is tested against; it
 * implements `VfioIrqDevice`, the interface the VMM side (`VfioPciInterrupts`) drives.
 *
 * Requests arrive as `vfio_irq_set` bytes; the eventfds they name are looked up in a `VfioFdTable`.
 * The emulated hardware enters through `raiseIntx`/`lowerIntx` (the INTx line) and `raise` (an MSI
 * or MSI-X message, an AER error, a device request), and the engine signals the bound trigger
 * `Event`, as the kernel's interrupt handlers signal the trigger eventfds.
 *
 * The rules, by index (each with the kernel's errno, as `IrqChipError`):
 *
 * - Validation first (`validateIrqSet`), then dispatch on (index, action): INTx takes MASK, UNMASK
 *   and TRIGGER; MSI and MSI-X TRIGGER only; ERR (PCIe only) and REQ TRIGGER only; anything else,
 *   including no action bit or several, is ENOTTY.
 * - At most one of INTx, MSI, MSI-X is active. Enabling one while another is active is EINVAL.
 * - INTx TRIGGER: count 0 + DATA_NONE while INTx is active disables it. Otherwise start 0 and count
 *   1 are required. DATA_EVENTFD enables INTx (fd -1: enabled with no trigger) or replaces the
 *   trigger; DATA_NONE/BOOL loop back (signal the trigger) and need INTx active. Enabling a pin that
 *   has no host IRQ routed is ENODEV (`vfio_intx_enable`; the fd is resolved first, as 6.9+ does).
 * - INTx automask: the line's assertion masks INTx and signals the trigger once. While masked the
 *   line stays asserted (the device's Interrupt Status, which the kernel's check-and-unmask reads),
 *   so nothing is lost: an unmask that finds the line still asserted keeps INTx masked and
 *   signals the trigger again instead. With no trigger bound the assertion still masks (the
 *   persistent handler does), and the next unmask after a trigger is bound re-delivers it.
 * - INTx UNMASK: DATA_NONE/BOOL unmask now; DATA_EVENTFD installs the unmask eventfd (the kernel's
 *   virqfd; EBUSY when one is installed already, any negative fd removes it). INTx MASK:
 *   DATA_NONE/BOOL mask; DATA_EVENTFD is ENOTTY (not implemented by vfio-pci).
 * - MSI/MSI-X TRIGGER: count 0 + DATA_NONE while the index is active disables it. DATA_EVENTFD on
 *   an inactive index enables it with exactly start + count host vectors (NORESIZE; start = count
 *   = 0 asks for none: `pci_alloc_irq_vectors(1, 0)` answers ERANGE), then binds; on an active
 *   index it re-binds. Each vector releases its old trigger first; fd < 0 leaves it
 *   unbound. Binding a vector beyond the allocation is EINVAL unless the host has dynamic MSI-X
 *   (MSI-X only), which allocates it for good (until disable). If a vector fails, every vector
 *   processed in that call, the failing one included, is left unbound (older bindings are lost,
 *   not restored), and an index enabled by that call is disabled again. DATA_NONE/BOOL with the
 *   index active loop back on the bound vectors of the range (not a disable).
 * - ERR/REQ TRIGGER: start 0, count ≤ 1. DATA_NONE needs a trigger bound (else EINVAL): count 0
 *   releases it, count 1 signals it. BOOL and EVENTFD need count 1; fd -1 releases, fd ≥ 0
 *   replaces, other negative fds are a successful no-op.
 *
 * Errnos are the kernel's: an fd that names nothing is EBADF (`eventfd_ctx_fdget`), a buffer that
 * ends before its header or its payload is EFAULT (`copy_from_user`/`memdup_user`), an argsz too
 * small for the payload is EINVAL (the validation trusts argsz).
 *
 * Where this model differs from the kernel, and why:
 * - A short host-vector allocation is `VfioVectorShortageError` (ENOSPC, with the number that was
 *   available), where the kernel returns that number as a positive ioctl result.
 * - The unmask eventfd is polled, not called back: our `Event`s have no wait queue. The engine
 *   drains it (`serviceIrqfds`) at the start of every SET_IRQS and every raise, which orders an
 *   unmask before anything that could observe the mask; the kernel's virqfd would have run at the
 *   moment of the signal. When the unmask eventfd is installed with a count already pending, the
 *   unmask runs at once (as the kernel's poll at registration does) and the count is consumed,
 *   so it is not taken a second time.
 * - Not modelled: the guest's Command-register INTx-disable bit (`virq_disabled`), PCI 2.2 devices
 *   without DisINTx (the host line is disabled instead; same behaviour seen from user space), and
 *   the irq-bypass producers.
 * - A pin with no host IRQ (`intxHostIrq: false`) reports INTx count 1 and answers ENODEV at
 *   enable, as kernels before the IRQ_NOTCONNECTED change did; newer kernels hide such a pin
 *   (Interrupt Pin reads 0, count 0), which is `intx: false` here.
 *
 * The device's pending bits. A raise on a vector of the active MSI or MSI-X index that has no
 * trigger bound is held by the device and sent when a trigger is bound to that vector: Linux masks
 * every MSI-X table entry that has no host interrupt requested (all of them at enable, and each one
 * whose trigger is released), so the device keeps the message in its Pending Bit Array, whether or
 * not a host vector is allocated to the entry. An MSI function may only use the vectors it was
 * enabled with (Multiple Message Enable), so an MSI raise past the allocation has nowhere to go.
 * Linux never writes the PBA (it masks entries and clears MSI-X Enable), and PCIe leaves what a
 * function does with its pending bits while MSI-X is disabled to the function; this model keeps
 * them, so a pending bit outlives a disable of its index and is sent once the index is enabled
 * again and the vector bound: that is what lets a VMM grow a NORESIZE index by disable and
 * re-enable without losing what the device held. Raises that have nowhere to go (the index is not enabled, an MSI vector past the
 * allocation, no ERR/REQ trigger bound) are counted in `counters().undeliverableRaises`.
 *
 * Threads: an engine belongs to one thread (the kernel's `igate` mutex is its caller's to provide);
 * the `Event`s it signals may be consumed on any thread.
 */

import { check, checkRange, ErrorCode, IrqChipError } from '../base/errors.ts';
import { MSIX_MAX_VECTORS } from '../device/msix-capability.ts';
import type { Event } from '../event/event.ts';
import { validateIrqSet } from './irq-set-validation.ts';
import { VfioFdTable } from './vfio-fd-table.ts';
import type { VfioIrqDevice } from './vfio-irq-device.ts';
import {
  decodeIrqInfo,
  decodeIrqSet,
  irqSetBool,
  irqSetEventfd,
  VFIO_EVENTFD_NONE,
  VFIO_IRQ_INFO_AUTOMASKED,
  VFIO_IRQ_INFO_BYTES,
  VFIO_IRQ_INFO_EVENTFD,
  VFIO_IRQ_INFO_MASKABLE,
  VFIO_IRQ_INFO_NORESIZE,
  VFIO_IRQ_SET_ACTION_MASK,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_TYPE_MASK,
  VFIO_IRQ_SET_ACTION_UNMASK,
  VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_IRQ_SET_DATA_TYPE_MASK,
  VFIO_PCI_ERR_IRQ_INDEX,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX,
  VFIO_PCI_MSIX_IRQ_INDEX,
  VFIO_PCI_NUM_IRQS,
  VFIO_PCI_REQ_IRQ_INDEX,
  writeIrqInfo,
  type VfioIrqInfo,
  type VfioIrqSet,
} from './vfio-uapi.ts';

/** The MSI capability's Multiple Message Capable field allows 1, 2, 4, 8, 16 or 32 vectors (PCI 3.0 §6.8.1.3). */
const MSI_VECTOR_COUNTS: readonly number[] = [0, 1, 2, 4, 8, 16, 32];
/** The kernel's `irq_type` when no interrupt type is active. */
const NO_IRQ_TYPE = VFIO_PCI_NUM_IRQS;

/** What the PCI function offers, as vfio-pci reads it from config space. */
export interface VfioIrqsConfig {
  /** The function has an INTx pin vfio-pci will use (INTx count 1); false for no pin, nointx or a VF. */
  readonly intx: boolean;
  /**
   * The pin has a host IRQ routed (`pdev->irq`). Default true. False: INTx count is 1 but enabling
   * INTx is ENODEV (kernels before the IRQ_NOTCONNECTED change; newer ones report count 0).
   */
  readonly intxHostIrq?: boolean;
  /** The MSI capability's vector count (1, 2, 4, 8, 16 or 32); 0 without an MSI capability. */
  readonly msiVectors: number;
  /** The MSI-X table size (1–2048); 0 without an MSI-X capability. */
  readonly msixVectors: number;
  /** A PCI Express function: the ERR index exists. */
  readonly pcie: boolean;
  /**
   * The host allocates MSI-X vectors dynamically (Linux 6.5+, `has_dyn_msix`): NORESIZE is clear
   * for MSI-X and vectors beyond the enabled count can be bound while enabled. Default false.
   */
  readonly dynamicMsix?: boolean;
  /** Host interrupt vectors this function may hold for MSI/MSI-X. Default: unlimited. */
  readonly hostVectors?: number;
  /** Resolves the fds of DATA_EVENTFD payloads. Default: a new, empty table. */
  readonly fds?: VfioFdTable;
}

/** The engine's observable state, for tests and diagnostics (a copy; events are the bound handles). */
export interface VfioIrqsState {
  /** INTx, MSI or MSI-X index while one is enabled, else null. */
  readonly activeIndex: number | null;
  /** The device's INTx line (its Interrupt Status bit). */
  readonly intxAsserted: boolean;
  /** INTx masked (automasked or by ACTION_MASK); false while INTx is not enabled. */
  readonly intxMasked: boolean;
  readonly intxTrigger: Event | null;
  readonly intxUnmaskEvent: Event | null;
  /** Host vectors allocated to the active MSI/MSI-X index, ascending. */
  readonly allocatedVectors: readonly number[];
  /** Bound trigger of each bound vector of the active MSI/MSI-X index. */
  readonly vectorTriggers: ReadonlyMap<number, Event>;
  /** The device's pending bits per index: vectors raised with no trigger bound, sent when one is. */
  readonly pendingVectors: Readonly<Record<'msi' | 'msix', readonly number[]>>;
  readonly errTrigger: Event | null;
  readonly reqTrigger: Event | null;
}

/**
 * A host-vector allocation that came up short. The kernel returns `available` as a positive ioctl
 * result (and enables nothing); callers must treat any non-zero result as failure.
 */
export class VfioVectorShortageError extends IrqChipError {
  constructor(
    readonly requested: number,
    readonly available: number,
  ) {
    super(ErrorCode.ENOSPC, `${requested} host vectors requested, ${available} available (the kernel returns ${available})`);
  }
}

function dataType(set: VfioIrqSet): number {
  return set.flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
}

/** The positions of `bits` that hold 1, ascending. */
function setBits(bits: Uint8Array): number[] {
  const positions: number[] = [];
  bits.forEach((bit, position) => {
    if (bit === 1) positions.push(position);
  });
  return positions;
}

function checkConfig(config: VfioIrqsConfig): void {
  check(MSI_VECTOR_COUNTS.includes(config.msiVectors), ErrorCode.EINVAL, () => `msiVectors must be one of ${MSI_VECTOR_COUNTS.join(', ')}, got ${config.msiVectors}`);
  checkRange(config.msixVectors, 0, MSIX_MAX_VECTORS, 'msixVectors');
  if (config.hostVectors !== undefined) checkRange(config.hostVectors, 0, Number.MAX_SAFE_INTEGER, 'hostVectors');
}

export class VfioIrqs implements VfioIrqDevice {
  readonly fds: VfioFdTable;
  private readonly config: VfioIrqsConfig;
  private readonly dynamicMsix: boolean;
  private readonly hostVectors: number;

  private irqType = NO_IRQ_TYPE;

  private intxAsserted = false;
  private intxMasked = false;
  private intxTrigger: Event | null = null;
  private intxUnmaskEvent: Event | null = null;

  // The active MSI or MSI-X index's vectors; sized for the larger of the two.
  private readonly vectorTriggers: (Event | null)[];
  private readonly vectorAllocated: Uint8Array;
  // The device's pending bits, per index: they outlive the index's enable (see the file comment).
  private readonly msiPending: Uint8Array;
  private readonly msixPending: Uint8Array;
  private allocatedVectorCount = 0;

  private errTrigger: Event | null = null;
  private reqTrigger: Event | null = null;

  private setIrqsApplied = 0;
  private setIrqsRejected = 0;
  private undeliverableRaises = 0;

  constructor(config: VfioIrqsConfig) {
    checkConfig(config);
    this.config = config;
    this.fds = config.fds ?? new VfioFdTable();
    this.dynamicMsix = config.dynamicMsix ?? false;
    this.hostVectors = config.hostVectors ?? Number.MAX_SAFE_INTEGER;
    const vectorSlots = Math.max(config.msiVectors, config.msixVectors);
    this.vectorTriggers = new Array<Event | null>(vectorSlots).fill(null);
    this.vectorAllocated = new Uint8Array(vectorSlots);
    this.msiPending = new Uint8Array(config.msiVectors);
    this.msixPending = new Uint8Array(config.msixVectors);
  }

  // ---- VfioIrqDevice: the process's fd numbers ------------------------------------------------

  /** Installs `event` in the fd table (`fds`); SET_IRQS payloads name it by the number returned. */
  openEventFd(event: Event): number {
    return this.fds.install(event);
  }

  /** Closes `fd` in the fd table; what was bound through it stays bound. */
  closeEventFd(fd: number): void {
    this.fds.close(fd);
  }

  /** Sub-indexes of `index` (vfio-pci's `vfio_pci_get_irq_count`): 0 for an index the function lacks. */
  irqCount(index: number): number {
    switch (index) {
      case VFIO_PCI_INTX_IRQ_INDEX:
        return this.config.intx ? 1 : 0;
      case VFIO_PCI_MSI_IRQ_INDEX:
        return this.config.msiVectors;
      case VFIO_PCI_MSIX_IRQ_INDEX:
        return this.config.msixVectors;
      case VFIO_PCI_ERR_IRQ_INDEX:
        return this.config.pcie ? 1 : 0;
      case VFIO_PCI_REQ_IRQ_INDEX:
        return 1;
      default:
        return 0;
    }
  }

  // ---- VFIO_DEVICE_SET_IRQS -------------------------------------------------------------------

  /** VFIO_DEVICE_SET_IRQS with a `vfio_irq_set` buffer. Throws `IrqChipError` with the kernel's errno. */
  setIrqs(bytes: Uint8Array): void {
    this.countingOutcome(() => {
      this.apply(decodeIrqSet(bytes));
    });
  }

  /** VFIO_DEVICE_SET_IRQS with an already decoded request. */
  applyIrqSet(set: VfioIrqSet): void {
    this.countingOutcome(() => {
      this.apply(set);
    });
  }

  private countingOutcome(request: () => void): void {
    try {
      request();
    } catch (error) {
      if (error instanceof IrqChipError) this.setIrqsRejected++;
      throw error;
    }
    this.setIrqsApplied++;
  }

  private apply(set: VfioIrqSet): void {
    this.serviceIrqfds();
    validateIrqSet(set, this.irqCount(set.index), VFIO_PCI_NUM_IRQS);
    this.dispatch(set);
  }

  /** vfio-pci's dispatch on (index, action): what has no handler is ENOTTY. */
  private dispatch(set: VfioIrqSet): void {
    const action = set.flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
    switch (set.index) {
      case VFIO_PCI_INTX_IRQ_INDEX:
        if (action === VFIO_IRQ_SET_ACTION_MASK) {
          this.setIntxMask(set);
          return;
        }
        if (action === VFIO_IRQ_SET_ACTION_UNMASK) {
          this.setIntxUnmask(set);
          return;
        }
        if (action === VFIO_IRQ_SET_ACTION_TRIGGER) {
          this.setIntxTrigger(set);
          return;
        }
        break;
      case VFIO_PCI_MSI_IRQ_INDEX:
      case VFIO_PCI_MSIX_IRQ_INDEX:
        // vfio-pci has no MSI/MSI-X masking ("XXX Need masking support exported").
        if (action === VFIO_IRQ_SET_ACTION_TRIGGER) {
          this.setVectorTrigger(set);
          return;
        }
        break;
      case VFIO_PCI_ERR_IRQ_INDEX:
      case VFIO_PCI_REQ_IRQ_INDEX:
        if (action === VFIO_IRQ_SET_ACTION_TRIGGER && (set.index === VFIO_PCI_REQ_IRQ_INDEX || this.config.pcie)) {
          this.setNotificationTrigger(set);
          return;
        }
        break;
    }
    throw new IrqChipError(ErrorCode.ENOTTY, `index ${set.index} does not support action flags 0x${action.toString(16)}`);
  }

  // ---- INTx -----------------------------------------------------------------------------------

  private checkIntxSingle(set: VfioIrqSet): void {
    check(this.irqType === VFIO_PCI_INTX_IRQ_INDEX, ErrorCode.EINVAL, 'INTx is not enabled');
    check(set.start === 0 && set.count === 1, ErrorCode.EINVAL, 'INTx takes start 0, count 1');
  }

  private setIntxTrigger(set: VfioIrqSet): void {
    const type = dataType(set);
    const intxActive = this.irqType === VFIO_PCI_INTX_IRQ_INDEX;
    if (intxActive && set.count === 0 && type === VFIO_IRQ_SET_DATA_NONE) {
      this.disableIntx();
      return;
    }
    check(intxActive || this.irqType === NO_IRQ_TYPE, ErrorCode.EINVAL, 'another interrupt type is enabled');
    check(set.start === 0 && set.count === 1, ErrorCode.EINVAL, 'INTx takes start 0, count 1');
    if (type === VFIO_IRQ_SET_DATA_EVENTFD) {
      const fd = irqSetEventfd(set, 0);
      const trigger = fd >= 0 ? this.fds.resolve(fd) : null;
      if (intxActive) this.intxTrigger = trigger;
      else this.enableIntx(trigger);
      return;
    }
    check(intxActive, ErrorCode.EINVAL, 'INTx loopback needs INTx enabled');
    if (type === VFIO_IRQ_SET_DATA_NONE || irqSetBool(set, 0)) this.intxTrigger?.signal();
  }

  private enableIntx(trigger: Event | null): void {
    check(this.config.intxHostIrq ?? true, ErrorCode.ENODEV, 'the INTx pin has no host IRQ routed');
    this.irqType = VFIO_PCI_INTX_IRQ_INDEX;
    this.intxMasked = false;
    this.intxTrigger = trigger;
    // request_irq on a line that is already asserted runs the handler at once.
    if (this.intxAsserted) this.intxInterrupt();
  }

  private disableIntx(): void {
    this.irqType = NO_IRQ_TYPE;
    this.intxMasked = false;
    this.intxTrigger = null;
    this.intxUnmaskEvent = null;
  }

  private setIntxUnmask(set: VfioIrqSet): void {
    this.checkIntxSingle(set);
    const type = dataType(set);
    if (type !== VFIO_IRQ_SET_DATA_EVENTFD) {
      if (type === VFIO_IRQ_SET_DATA_NONE || irqSetBool(set, 0)) this.unmaskIntx();
      return;
    }
    const fd = irqSetEventfd(set, 0);
    if (fd < 0) {
      this.intxUnmaskEvent = null;
      return;
    }
    const unmaskEvent = this.fds.resolve(fd);
    check(this.intxUnmaskEvent === null, ErrorCode.EBUSY, 'an INTx unmask eventfd is installed already; remove it with fd -1 first');
    this.intxUnmaskEvent = unmaskEvent;
    // The kernel polls the eventfd at registration and runs the unmask if it is already readable.
    if (unmaskEvent.tryRead() !== 0n) this.unmaskIntx();
  }

  private setIntxMask(set: VfioIrqSet): void {
    this.checkIntxSingle(set);
    const type = dataType(set);
    check(type !== VFIO_IRQ_SET_DATA_EVENTFD, ErrorCode.ENOTTY, 'INTx mask by eventfd is not implemented by vfio-pci');
    if (type === VFIO_IRQ_SET_DATA_NONE || irqSetBool(set, 0)) this.intxMasked = true;
  }

  /** The host INTx handler: the line is asserted; mask and signal unless masked already. */
  private intxInterrupt(): void {
    if (this.intxMasked) return;
    this.intxMasked = true;
    this.intxTrigger?.signal();
  }

  /**
   * The unmask: a still-asserted line is not unmasked but re-signalled (check-and-unmask finds the
   * device asserting; the kernel re-sends the interrupt to user space instead of taking it again).
   */
  private unmaskIntx(): void {
    if (this.irqType !== VFIO_PCI_INTX_IRQ_INDEX || !this.intxMasked) return;
    if (this.intxAsserted) this.intxTrigger?.signal();
    else this.intxMasked = false;
  }

  /**
   * Runs the work the kernel's virqfd does when the INTx unmask eventfd is signalled: consumes
   * its count and unmasks. Called by every SET_IRQS and raise; call it also when the unmask event
   * fires and nothing else follows (it costs one atomic read when nothing is pending).
   */
  serviceIrqfds(): void {
    if (this.intxUnmaskEvent !== null && this.intxUnmaskEvent.tryRead() !== 0n) this.unmaskIntx();
  }

  /** The device asserts its INTx line (level: it stays asserted until `lowerIntx`). */
  raiseIntx(): void {
    check(this.config.intx, ErrorCode.EINVAL, 'the function has no INTx pin');
    this.serviceIrqfds();
    this.intxAsserted = true;
    if (this.irqType === VFIO_PCI_INTX_IRQ_INDEX) this.intxInterrupt();
  }

  /** The device de-asserts its INTx line (its driver serviced it). */
  lowerIntx(): void {
    this.intxAsserted = false;
  }

  // ---- MSI and MSI-X --------------------------------------------------------------------------

  private setVectorTrigger(set: VfioIrqSet): void {
    const type = dataType(set);
    const indexActive = this.irqType === set.index;
    if (indexActive && set.count === 0 && type === VFIO_IRQ_SET_DATA_NONE) {
      this.disableVectors();
      return;
    }
    check(indexActive || this.irqType === NO_IRQ_TYPE, ErrorCode.EINVAL, 'another interrupt type is enabled');
    if (type === VFIO_IRQ_SET_DATA_EVENTFD) {
      if (indexActive) {
        this.bindVectorBlock(set);
        return;
      }
      this.enableVectors(set.index, set.start + set.count);
      try {
        this.bindVectorBlock(set);
      } catch (error) {
        this.disableVectors();
        throw error;
      }
      return;
    }
    // DATA_NONE/BOOL with count > 0: loopback, not a disable (seed-apis.md §6 item 15).
    check(indexActive, ErrorCode.EINVAL, 'loopback needs the index enabled');
    for (let position = 0; position < set.count; position++) {
      if (type === VFIO_IRQ_SET_DATA_BOOL && !irqSetBool(set, position)) continue;
      this.vectorTriggers[set.start + position]?.signal();
    }
  }

  /** Enables MSI or MSI-X with exactly `vectorCount` host vectors (NORESIZE). */
  private enableVectors(index: number, vectorCount: number): void {
    // pci_alloc_irq_vectors(pdev, 1, 0, ...): max below min is ERANGE in the PCI core.
    check(vectorCount > 0, ErrorCode.ERANGE, 'enabling with start 0, count 0 asks for no vector');
    if (vectorCount > this.hostVectors) {
      if (this.hostVectors > 0) throw new VfioVectorShortageError(vectorCount, this.hostVectors);
      throw new IrqChipError(ErrorCode.ENOSPC, 'no host vector is available');
    }
    this.irqType = index;
    this.vectorAllocated.fill(1, 0, vectorCount);
    this.allocatedVectorCount = vectorCount;
  }

  /** Frees the host vectors. The device's pending bits stay (Linux does not touch the PBA). */
  private disableVectors(): void {
    this.irqType = NO_IRQ_TYPE;
    this.vectorTriggers.fill(null);
    this.vectorAllocated.fill(0);
    this.allocatedVectorCount = 0;
  }

  private pendingOf(index: number): Uint8Array {
    return index === VFIO_PCI_MSIX_IRQ_INDEX ? this.msixPending : this.msiPending;
  }

  /**
   * Binds vectors start .. start + count - 1 to the payload's fds. On a failure, every vector of
   * this call up to and including the failing one is left unbound, as `vfio_msi_set_block` does.
   */
  private bindVectorBlock(set: VfioIrqSet): void {
    let position = 0;
    try {
      for (; position < set.count; position++) this.bindVector(set.start + position, irqSetEventfd(set, position));
    } catch (error) {
      for (let processed = 0; processed <= position; processed++) this.vectorTriggers[set.start + processed] = null;
      throw error;
    }
  }

  private bindVector(vector: number, fd: number): void {
    this.vectorTriggers[vector] = null; // the old trigger is released first, whatever follows
    if (fd < 0) return;
    if (this.vectorAllocated[vector] === 0) this.allocateDynamicVector(vector);
    const trigger = this.fds.resolve(fd);
    this.vectorTriggers[vector] = trigger;
    // Binding unmasks the host vector: a message the device held pending is sent now.
    const pending = this.pendingOf(this.irqType);
    if (pending[vector] === 1) {
      pending[vector] = 0;
      trigger.signal();
    }
  }

  /** A vector beyond the enabled count: EINVAL under NORESIZE; allocated for good with dynamic MSI-X. */
  private allocateDynamicVector(vector: number): void {
    check(this.irqType === VFIO_PCI_MSIX_IRQ_INDEX && this.dynamicMsix, ErrorCode.EINVAL, () =>
      `vector ${vector} is beyond the ${this.allocatedVectorCount} vectors enabled (NORESIZE: disable and re-enable to grow)`,
    );
    check(this.allocatedVectorCount < this.hostVectors, ErrorCode.ENOSPC, 'no host vector is available');
    this.vectorAllocated[vector] = 1;
    this.allocatedVectorCount++;
  }

  /**
   * The device sends an interrupt: index INTx asserts the line (as `raiseIntx`); MSI/MSI-X send
   * vector `vector`'s message; ERR reports an AER error; REQ asks for the device back.
   */
  raise(index: number, vector = 0): void {
    if (index === VFIO_PCI_INTX_IRQ_INDEX) {
      check(vector === 0, ErrorCode.EINVAL, 'INTx has one sub-index, 0');
      this.raiseIntx();
      return;
    }
    // An if, not check(): a message closure would be allocated on every interrupt.
    if (!(Number.isInteger(vector) && vector >= 0 && vector < this.irqCount(index))) {
      throw new IrqChipError(ErrorCode.EINVAL, `index ${index} has ${this.irqCount(index)} sub-indexes; vector ${vector} is not one`);
    }
    this.serviceIrqfds();
    if (index === VFIO_PCI_MSI_IRQ_INDEX || index === VFIO_PCI_MSIX_IRQ_INDEX) this.raiseVector(index, vector);
    else this.raiseNotification(index === VFIO_PCI_ERR_IRQ_INDEX ? this.errTrigger : this.reqTrigger);
  }

  private raiseVector(index: number, vector: number): void {
    if (this.irqType !== index) {
      this.undeliverableRaises++;
      return;
    }
    const trigger = this.vectorTriggers[vector];
    if (trigger !== null && trigger !== undefined) {
      trigger.signal();
    } else if (index === VFIO_PCI_MSIX_IRQ_INDEX || this.vectorAllocated[vector] === 1) {
      // MSI-X: the entry is masked in the table, allocated or not; MSI: within Multiple Message Enable.
      this.pendingOf(index)[vector] = 1;
    } else {
      this.undeliverableRaises++;
    }
  }

  private raiseNotification(trigger: Event | null): void {
    if (trigger === null) this.undeliverableRaises++;
    else trigger.signal();
  }

  // ---- ERR and REQ ----------------------------------------------------------------------------

  /** vfio-pci's single-context trigger (`vfio_pci_set_ctx_trigger_single`) for ERR and REQ. */
  private setNotificationTrigger(set: VfioIrqSet): void {
    check(set.start === 0 && set.count <= 1, ErrorCode.EINVAL, 'ERR and REQ take start 0, count 0 or 1');
    const current = set.index === VFIO_PCI_ERR_IRQ_INDEX ? this.errTrigger : this.reqTrigger;
    const type = dataType(set);
    if (type === VFIO_IRQ_SET_DATA_NONE) {
      check(current !== null, ErrorCode.EINVAL, 'DATA_NONE needs a trigger bound');
      if (set.count === 1) current.signal();
      else this.setNotificationEvent(set.index, null);
      return;
    }
    check(set.count === 1, ErrorCode.EINVAL, 'DATA_BOOL and DATA_EVENTFD take count 1');
    if (type === VFIO_IRQ_SET_DATA_BOOL) {
      if (irqSetBool(set, 0)) current?.signal();
      return;
    }
    const fd = irqSetEventfd(set, 0);
    if (fd === VFIO_EVENTFD_NONE) this.setNotificationEvent(set.index, null);
    else if (fd >= 0) this.setNotificationEvent(set.index, this.fds.resolve(fd));
  }

  private setNotificationEvent(index: number, event: Event | null): void {
    if (index === VFIO_PCI_ERR_IRQ_INDEX) this.errTrigger = event;
    else this.reqTrigger = event;
  }

  // ---- VFIO_DEVICE_GET_IRQ_INFO ---------------------------------------------------------------

  /** The `vfio_irq_info` answer for `index`; EINVAL for an index beyond REQ, or ERR on a non-PCIe function. */
  irqInfo(index: number): VfioIrqInfo {
    check(index < VFIO_PCI_NUM_IRQS, ErrorCode.EINVAL, () => `index ${index} is not below ${VFIO_PCI_NUM_IRQS}`);
    check(index !== VFIO_PCI_ERR_IRQ_INDEX || this.config.pcie, ErrorCode.EINVAL, 'ERR exists on PCI Express functions only');
    let flags = VFIO_IRQ_INFO_EVENTFD;
    if (index === VFIO_PCI_INTX_IRQ_INDEX) flags |= VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
    else if (index !== VFIO_PCI_MSIX_IRQ_INDEX || !this.dynamicMsix) flags |= VFIO_IRQ_INFO_NORESIZE;
    return { argsz: VFIO_IRQ_INFO_BYTES, flags, index, count: this.irqCount(index) };
  }

  /**
   * VFIO_DEVICE_GET_IRQ_INFO with a `vfio_irq_info` buffer: returns a copy of it with the first
   * 16 bytes answered (argsz as given). EINVAL for argsz below 16 and as `irqInfo`.
   */
  getIrqInfo(bytes: Uint8Array): Uint8Array {
    const request = decodeIrqInfo(bytes);
    check(request.argsz >= VFIO_IRQ_INFO_BYTES, ErrorCode.EINVAL, () => `argsz ${request.argsz} is below ${VFIO_IRQ_INFO_BYTES}`);
    const answer = bytes.slice();
    writeIrqInfo(answer, { ...this.irqInfo(request.index), argsz: request.argsz });
    return answer;
  }

  // ---- Observation ----------------------------------------------------------------------------

  state(): VfioIrqsState {
    const allocatedVectors: number[] = [];
    const vectorTriggers = new Map<number, Event>();
    this.vectorTriggers.forEach((trigger, vector) => {
      if (this.vectorAllocated[vector] === 1) allocatedVectors.push(vector);
      if (trigger !== null) vectorTriggers.set(vector, trigger);
    });
    const pendingVectors = { msi: setBits(this.msiPending), msix: setBits(this.msixPending) };
    return {
      activeIndex: this.irqType === NO_IRQ_TYPE ? null : this.irqType,
      intxAsserted: this.intxAsserted,
      intxMasked: this.intxMasked,
      intxTrigger: this.intxTrigger,
      intxUnmaskEvent: this.intxUnmaskEvent,
      allocatedVectors,
      vectorTriggers,
      pendingVectors,
      errTrigger: this.errTrigger,
      reqTrigger: this.reqTrigger,
    };
  }

  /** SET_IRQS calls applied and rejected, and raises no host path could deliver. */
  counters(): Readonly<Record<'setIrqsApplied' | 'setIrqsRejected' | 'undeliverableRaises', number>> {
    return {
      setIrqsApplied: this.setIrqsApplied,
      setIrqsRejected: this.setIrqsRejected,
      undeliverableRaises: this.undeliverableRaises,
    };
  }
}
