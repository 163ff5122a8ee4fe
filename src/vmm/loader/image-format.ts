/**
 * Which loader an image needs, decided in QEMU's order for `-kernel` (hw/i386/x86.c
 * x86_load_linux, then hw/i386/multiboot.c) with our 64-bit guests added:
 *
 *   1. a Linux boot-protocol header ("HdrS" at 0x202): QEMU boots it as Linux, we refuse it;
 *   2. a multiboot v1 header in the first 8192 bytes: a multiboot kernel, loaded from the
 *      header's addresses when it sets the a.out kludge flag, else as a 32-bit i386 ELF (QEMU
 *      refuses an x86-64 ELF here, and so do we);
 *   3. an x86-64 ELF executable: one of our 64-bit guests;
 *   4. anything else is a flat 64-bit image for 1 MiB, unless it is plainly another format.
 *
 * Everything refused is ENOEXEC, with a message that says what the file looks like.
 */

import { ErrorCode, IrqChipError } from '../../base/errors.ts';
import { ElfMachine, elfClassOf, elfMachineOf, isElf, machineName, parseElf, type ElfImage } from './elf-image.ts';
import { findMultibootHeader, type MultibootHeader, type MultibootLoadAddresses } from './multiboot-header.ts';

export type IdentifiedImage =
  | { readonly kind: 'multiboot-elf'; readonly header: MultibootHeader; readonly elf: ElfImage }
  | { readonly kind: 'multiboot-aout'; readonly header: MultibootHeader; readonly loadAddresses: MultibootLoadAddresses }
  | { readonly kind: 'elf64'; readonly elf: ElfImage }
  | { readonly kind: 'flat' };

/** The Linux x86 boot protocol's header signature "HdrS" at 0x202 (Documentation/arch/x86/boot.rst). */
const LINUX_HEADER_SIGNATURE = 0x53726448;
const LINUX_HEADER_SIGNATURE_AT = 0x202;
const LINUX_PROTOCOL_VERSION_AT = 0x206;
/** "MZ": a DOS/PE executable (an EFI application, a Windows program). */
const MZ_SIGNATURE = [0x4d, 0x5a];

export function identifyImage(image: Uint8Array, imageName: string): IdentifiedImage {
  const refuse = (why: string): never => {
    throw new IrqChipError(ErrorCode.ENOEXEC, `${imageName} ${why}`);
  };
  if (image.length === 0) refuse('is empty');
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (image.length >= LINUX_PROTOCOL_VERSION_AT + 2 && view.getUint32(LINUX_HEADER_SIGNATURE_AT, true) === LINUX_HEADER_SIGNATURE) {
    const version = view.getUint16(LINUX_PROTOCOL_VERSION_AT, true);
    refuse(`is a Linux kernel (bzImage, boot protocol ${version >> 8}.${(version & 0xff).toString().padStart(2, '0')}): this VMM boots multiboot kernels and its own 64-bit images, not Linux's boot protocol`);
  }
  const header = findMultibootHeader(image, imageName);
  if (header !== undefined) {
    if (header.loadAddresses !== undefined) return { kind: 'multiboot-aout', header, loadAddresses: header.loadAddresses };
    if (!isElf(image)) refuse(`has a multiboot header without the a.out kludge (flag 16), so it must be an ELF, and it is not`);
    if (elfMachineOf(image) === ElfMachine.X86_64) {
      refuse(`is an x86-64 ELF with a multiboot header: a multiboot loader starts it in 32-bit mode, and QEMU refuses it too ("Cannot load x86-64 image, give a 32bit one"); convert it with objcopy -O elf32-i386`);
    }
    const elf = parseElf(image, imageName);
    if (elf.elfClass !== 32 || elf.machine !== ElfMachine.I386) refuse(`is a ${elf.elfClass}-bit ${machineName(elf.machine)} ELF with a multiboot header: a multiboot kernel is a 32-bit i386 ELF`);
    return { kind: 'multiboot-elf', header, elf };
  }
  if (isElf(image)) {
    const elfClass = elfClassOf(image);
    const machine = elfMachineOf(image);
    if (elfClass === 64 && machine === ElfMachine.X86_64) return { kind: 'elf64', elf: parseElf(image, imageName) };
    if (elfClass === 32 && machine === ElfMachine.I386) refuse('is a 32-bit i386 ELF without a multiboot header: nothing says how to start it (add a multiboot header, or build it as an x86-64 ELF)');
    refuse(`is an ELF for ${elfClass === undefined ? 'an unknown class' : `${elfClass}-bit ${machineName(machine)}`}, not x86-64`);
  }
  if (MZ_SIGNATURE.every((byte, index) => image[index] === byte)) refuse('is a DOS/PE executable ("MZ"), such as an EFI application: this VMM has no UEFI firmware to run it');
  return { kind: 'flat' };
}
