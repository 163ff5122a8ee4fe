/**
 * The integer widths of the hardware and kernel interfaces: 32-bit register and message words,
 * 64-bit addresses and MSR values, and the all-ones value of a read that nothing drives. Every
 * layer checks its callers' numbers against these, so they are defined once, here.
 */

export const U32_MAX = 0xffffffff;
const U64_MAX = (1n << 64n) - 1n;

const BITS_PER_BYTE = 8;
const DWORD_BYTES = 4;

/** Whether `value` is a number holding an unsigned 32-bit integer (the type is checked too: JavaScript callers may pass anything). */
export function isU32(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= U32_MAX;
}

/** Whether `value` is a bigint holding an unsigned 64-bit integer. */
export function isU64(value: unknown): value is bigint {
  return typeof value === 'bigint' && value >= 0n && value <= U64_MAX;
}

/** Joins two 32-bit halves (each read as unsigned) into the u64 they encode. */
export function joinHalves(low: number, high: number): bigint {
  return (BigInt(high >>> 0) << 32n) | BigInt(low >>> 0);
}

/** The low half of a u64, as an int32 word (what a state word holds; `>>> 0` reads it unsigned). */
export function lowHalf(value: bigint): number {
  return Number(BigInt.asIntN(32, value));
}

/** The high half of a u64, as an int32 word. */
export function highHalf(value: bigint): number {
  return Number(BigInt.asIntN(32, value >> 32n));
}

/**
 * All ones in an access of `size` bytes, at most 32 bits: what a read of an undriven bus returns
 * (the data lines float high), and the widest value a guest can write.
 */
export function allOnes(size: number): number {
  return size >= DWORD_BYTES ? U32_MAX : (1 << (size * BITS_PER_BYTE)) - 1;
}
