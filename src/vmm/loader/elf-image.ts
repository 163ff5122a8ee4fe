/**
 * ELF executables, 32- and 64-bit little-endian (System V ABI, "ELF Header" and "Program Header"
 * chapters): the header, and the loadable segments placed by physical address (p_paddr), as
 * QEMU's ELF loader places them (include/hw/elf_ops.h). Every offset and size is checked against
 * the file: a malformed ELF is refused with ENOEXEC, never read past its end.
 */

import { ErrorCode, IrqChipError } from '../../base/errors.ts';
import { hex, type ImageSegment } from './image-segment.ts';

/** e_machine values this project meets (the ELF ABI supplements' registry). */
export const ElfMachine = { I386: 3, X86_64: 62 } as const;
const MACHINE_NAMES: Readonly<Record<number, string>> = { 3: 'i386', 8: 'MIPS', 20: 'PowerPC', 21: 'PowerPC64', 40: 'ARM', 62: 'x86-64', 183: 'AArch64', 243: 'RISC-V' };

const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46];
const EI_CLASS = 4;
const EI_DATA = 5;
const ELFCLASS32 = 1;
const ELFCLASS64 = 2;
const ELFDATA2LSB = 1;
const ET_EXEC = 2;
const ET_DYN = 3;
const PT_LOAD = 1;
const PF_X = 1;

/** Field offsets of the ELF header and of one program header, per class. */
const Layout = {
  32: { headerBytes: 52, entry: 24, phoff: 28, phentsize: 42, phnum: 44, programHeaderBytes: 32, type: 0, offset: 4, vaddr: 8, paddr: 12, filesz: 16, memsz: 20, flags: 24 },
  64: { headerBytes: 64, entry: 24, phoff: 32, phentsize: 54, phnum: 56, programHeaderBytes: 56, type: 0, offset: 8, vaddr: 16, paddr: 24, filesz: 32, memsz: 40, flags: 4 },
} as const;
const E_TYPE = 16;
const E_MACHINE = 18;

export type ElfClass = 32 | 64;

export interface ElfImage {
  readonly elfClass: ElfClass;
  readonly machine: number;
  /**
   * Where execution starts, as a physical address: e_entry, moved by (p_paddr − p_vaddr) when
   * it lies in an executable segment linked at another virtual address (what QEMU's load_elf
   * does for kernels linked high and loaded low).
   */
  readonly entry: number;
  /** The PT_LOAD segments with memory to them, at p_paddr. */
  readonly segments: readonly ImageSegment[];
}

interface LoadableSegment {
  readonly offset: number;
  readonly fileBytes: number;
  readonly memoryBytes: number;
  readonly physical: number;
  readonly virtual: number;
  readonly executable: boolean;
}

/** e_entry as a physical address (see `ElfImage.entry`; include/hw/elf_ops.h, the p_filesz bound included). */
function physicalEntry(virtualEntry: number, segments: readonly LoadableSegment[]): number {
  const linkedElsewhere = segments.find((segment) => segment.executable && segment.physical !== segment.virtual && virtualEntry >= segment.virtual && virtualEntry < segment.virtual + segment.fileBytes);
  return linkedElsewhere === undefined ? virtualEntry : virtualEntry - linkedElsewhere.virtual + linkedElsewhere.physical;
}

export function isElf(image: Uint8Array): boolean {
  return ELF_MAGIC.every((byte, index) => image[index] === byte);
}

/** The ELF class of an image whose magic is ELF's, or undefined when EI_CLASS is neither. */
export function elfClassOf(image: Uint8Array): ElfClass | undefined {
  const value = image[EI_CLASS];
  return value === ELFCLASS32 ? 32 : value === ELFCLASS64 ? 64 : undefined;
}

/** e_machine (at the same offset in both classes); the image must be at least 20 bytes. */
export function elfMachineOf(image: Uint8Array): number {
  return (image[E_MACHINE] ?? 0) | ((image[E_MACHINE + 1] ?? 0) << 8);
}

export function machineName(machine: number): string {
  return MACHINE_NAMES[machine] ?? `machine ${machine}`;
}

/** Parses an ELF executable; `imageName` names it in the messages. */
export function parseElf(image: Uint8Array, imageName: string): ElfImage {
  const refuse = (why: string): never => {
    throw new IrqChipError(ErrorCode.ENOEXEC, `${imageName}: ${why}`);
  };
  const elfClass = elfClassOf(image) ?? refuse(`ELF class ${image[EI_CLASS] ?? 'missing'} is neither 32- nor 64-bit`);
  const layout = Layout[elfClass];
  if (image.length < layout.headerBytes) refuse(`truncated ELF header (${image.length} bytes)`);
  if (image[EI_DATA] !== ELFDATA2LSB) refuse('big-endian ELF: an x86 image is little-endian');
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const word = (at: number): number => (elfClass === 64 ? Number(view.getBigUint64(at, true)) : view.getUint32(at, true));
  const type = view.getUint16(E_TYPE, true);
  if (type === ET_DYN) refuse('a position-independent ELF (ET_DYN) has no load address: link it as an executable (-no-pie)');
  if (type !== ET_EXEC) refuse(`ELF type ${type} is not an executable (ET_EXEC)`);
  const count = view.getUint16(layout.phnum, true);
  const entrySize = view.getUint16(layout.phentsize, true);
  const tableAt = word(layout.phoff);
  if (count === 0) refuse('no program headers: nothing to load');
  if (entrySize !== layout.programHeaderBytes) refuse(`program headers of ${entrySize} bytes, expected ${layout.programHeaderBytes}`);
  if (tableAt + count * entrySize > image.length) refuse(`the program header table (${count} at offset ${hex(tableAt)}) runs past the end of the file`);

  const loadable: LoadableSegment[] = [];
  for (let index = 0; index < count; index++) {
    const at = tableAt + index * entrySize;
    if (view.getUint32(at + layout.type, true) !== PT_LOAD) continue;
    const segment = { offset: word(at + layout.offset), fileBytes: word(at + layout.filesz), memoryBytes: word(at + layout.memsz), physical: word(at + layout.paddr), virtual: word(at + layout.vaddr), executable: (view.getUint32(at + layout.flags, true) & PF_X) !== 0 };
    // QEMU skips segments without memory (some linkers emit them) rather than loading nothing.
    if (segment.memoryBytes === 0) continue;
    if (segment.fileBytes > segment.memoryBytes) refuse(`segment ${index} has more file bytes (${hex(segment.fileBytes)}) than memory bytes (${hex(segment.memoryBytes)})`);
    if (segment.offset + segment.fileBytes > image.length) refuse(`segment ${index}'s bytes (offset ${hex(segment.offset)}, ${hex(segment.fileBytes)} bytes) run past the end of the file`);
    loadable.push(segment);
  }
  const segments = loadable.map((segment): ImageSegment => ({ address: segment.physical, bytes: image.subarray(segment.offset, segment.offset + segment.fileBytes), memoryBytes: segment.memoryBytes }));
  if (segments.length === 0) refuse('no loadable segment (PT_LOAD with memory)');
  return { elfClass, machine: elfMachineOf(image), entry: physicalEntry(word(layout.entry), loadable), segments };
}
