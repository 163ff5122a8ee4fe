/**
 * `KvmVm`: one KVM virtual machine (KVM_CREATE_VM) with its guest RAM.
 *
 * Guest RAM is a SharedArrayBuffer, so every worker (each vCPU runs in its own) sees the same
 * bytes through `postMessage` without a native view per thread. A SharedArrayBuffer's backing
 * store is not page-aligned (glibc's chunk header comes first), so the buffer is allocated one
 * page larger and the page-aligned sub-range is what KVM maps (kvm-from-node.md §1).
 *
 * The VM that `create` returns owns its fd and keeps its RAM referenced until `close()`: KVM
 * reads and writes that memory behind JavaScript's back. `fromDescriptor` builds a view on
 * another thread that owns nothing.
 */

import { ErrorCode, IrqChipError, checkRange } from '../base/errors.ts';
import { addon } from './addon.ts';
import { KVM_API_VERSION, KVM_ENABLE_CAP_BYTES, KVM_USERSPACE_MEMORY_REGION_BYTES, KvmIoctl } from './kvm-abi.ts';
import { O_CLOEXEC, O_RDWR, check } from './linux.ts';

export const KVM_DEVICE_PATH = '/dev/kvm';
const PAGE_BYTES = 4096;

/**
 * Where KVM_SET_TSS_ADDR puts the three pages Intel's real-mode emulation needs (without
 * unrestricted guest): just below the 4 GiB BIOS area, as QEMU does. Guest RAM must not reach it.
 */
const DEFAULT_TSS_ADDRESS = 0xfffbd000;

export interface KvmVmOptions {
  /** Guest RAM at guest-physical 0, in bytes: a whole number of pages, below the TSS pages. */
  readonly memoryBytes: number;
}

export interface KvmVmDescriptor {
  readonly kind: 'kvm-vm';
  readonly vmFd: number;
  readonly vcpuMmapSize: number;
  /** Guest RAM: `memory[memoryOffset ..< memoryOffset + memoryBytes]` is guest-physical 0... */
  readonly memory: SharedArrayBuffer;
  readonly memoryOffset: number;
  readonly memoryBytes: number;
}

/** VMs created on this thread and not closed: their RAM must outlive KVM's use of it. */
const openVms = new Set<KvmVm>();

export class KvmVm {
  /** Guest RAM as bytes: index = guest-physical address. */
  readonly memory: Uint8Array;
  private open = true;

  private constructor(
    private readonly state: KvmVmDescriptor,
    private readonly owner: boolean,
  ) {
    this.memory = new Uint8Array(state.memory, state.memoryOffset, state.memoryBytes);
  }

  /** Opens /dev/kvm, checks the API version, creates the VM, its TSS pages and its RAM. */
  static create(options: KvmVmOptions): KvmVm {
    const { memoryBytes } = options;
    checkRange(memoryBytes, PAGE_BYTES, DEFAULT_TSS_ADDRESS, 'guest memory bytes');
    if (memoryBytes % PAGE_BYTES !== 0) throw new IrqChipError(ErrorCode.EINVAL, `guest memory must be whole pages, got ${memoryBytes} bytes`);
    const system = check(addon.open(KVM_DEVICE_PATH, O_RDWR | O_CLOEXEC), `open ${KVM_DEVICE_PATH}`);
    let vmFd = -1;
    try {
      const version = check(addon.ioctl(system, KvmIoctl.GET_API_VERSION), 'KVM_GET_API_VERSION');
      if (version !== KVM_API_VERSION) throw new IrqChipError(ErrorCode.ENODEV, `KVM API version ${version}, expected ${KVM_API_VERSION}`);
      const vcpuMmapSize = check(addon.ioctl(system, KvmIoctl.GET_VCPU_MMAP_SIZE), 'KVM_GET_VCPU_MMAP_SIZE');
      vmFd = check(addon.ioctl(system, KvmIoctl.CREATE_VM, 0), 'KVM_CREATE_VM');
      check(addon.ioctl(vmFd, KvmIoctl.SET_TSS_ADDR, DEFAULT_TSS_ADDRESS), 'KVM_SET_TSS_ADDR');
      const memory = new SharedArrayBuffer(memoryBytes + PAGE_BYTES);
      const memoryOffset = Number(BigInt(PAGE_BYTES) - (addon.addressOf(new Uint8Array(memory)) % BigInt(PAGE_BYTES))) % PAGE_BYTES;
      const vm = new KvmVm({ kind: 'kvm-vm', vmFd, vcpuMmapSize, memory, memoryOffset, memoryBytes }, true);
      vm.mapMemory();
      openVms.add(vm);
      return vm;
    } catch (error) {
      if (vmFd >= 0) addon.close(vmFd);
      throw error;
    } finally {
      addon.close(system);
    }
  }

  /** A view of the VM on this thread (for a vCPU worker): shares the fd and RAM, owns neither. */
  static fromDescriptor(descriptor: KvmVmDescriptor): KvmVm {
    const { vmFd, memory, memoryOffset, memoryBytes } = descriptor;
    // Descriptors arrive through postMessage: the type is a claim to check.
    const kind: unknown = descriptor.kind;
    if (kind !== 'kvm-vm' || !Number.isInteger(vmFd) || !(memory instanceof SharedArrayBuffer) || memoryOffset + memoryBytes > memory.byteLength) {
      throw new IrqChipError(ErrorCode.EINVAL, 'not a KVM VM descriptor');
    }
    return new KvmVm(descriptor, false);
  }

  get fd(): number {
    if (!this.open) throw new IrqChipError(ErrorCode.EBADF, 'the VM is closed');
    return this.state.vmFd;
  }

  /** The size of a vCPU's kvm_run mapping (KVM_GET_VCPU_MMAP_SIZE). */
  get vcpuMmapSize(): number {
    return this.state.vcpuMmapSize;
  }

  descriptor(): KvmVmDescriptor {
    return this.state;
  }

  /** KVM_CHECK_EXTENSION on the VM: 0 when absent, else the capability's value (often 1, sometimes a count). */
  checkExtension(capability: number): number {
    return check(addon.ioctl(this.fd, KvmIoctl.CHECK_EXTENSION, capability), 'KVM_CHECK_EXTENSION');
  }

  /** KVM_ENABLE_CAP on the VM with one argument (`name` is the capability's, for the error). */
  enableCapability(capability: number, argument: bigint, name: string): void {
    const request = new DataView(new ArrayBuffer(KVM_ENABLE_CAP_BYTES));
    request.setUint32(0, capability, true);
    request.setBigUint64(8, argument, true);
    this.ioctl(KvmIoctl.ENABLE_CAP, request, `KVM_ENABLE_CAP(${name})`);
  }

  /** A VM ioctl; throws the typed error for a refusal, naming `operation`. */
  ioctl(request: number, arg: number | bigint | ArrayBufferView, operation: string): number {
    return check(addon.ioctl(this.fd, request, arg), operation);
  }

  /**
   * Closes the VM's fd (the owner only; a view just stops using it). Stop its vCPU threads first:
   * the kernel keeps the VM, and this RAM mapped, while any vCPU fd is open.
   */
  close(): void {
    if (!this.open) return;
    this.open = false;
    if (!this.owner) return;
    addon.close(this.state.vmFd);
    openVms.delete(this);
  }

  /** KVM_SET_USER_MEMORY_REGION: slot 0, guest-physical 0, the page-aligned part of the buffer. */
  private mapMemory(): void {
    const region = new DataView(new ArrayBuffer(KVM_USERSPACE_MEMORY_REGION_BYTES));
    region.setUint32(0, 0, true); // slot
    region.setUint32(4, 0, true); // flags
    region.setBigUint64(8, 0n, true); // guest_phys_addr
    region.setBigUint64(16, BigInt(this.state.memoryBytes), true); // memory_size
    region.setBigUint64(24, addon.addressOf(this.memory), true); // userspace_addr
    this.ioctl(KvmIoctl.SET_USER_MEMORY_REGION, region, 'KVM_SET_USER_MEMORY_REGION');
  }
}
