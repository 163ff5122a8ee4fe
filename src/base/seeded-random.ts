/**
 * Deterministic pseudo-random numbers (mulberry32), so a run's choices replay from its seed: the
 * stress tests' schedules and the demo devices' arrivals.
 */

const TWO_POW_32 = 2 ** 32;

/** A generator of numbers in [0, 1), the same sequence for the same seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let mixed = Math.imul(state ^ (state >>> 15), state | 1);
    mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), mixed | 61);
    return ((mixed ^ (mixed >>> 14)) >>> 0) / TWO_POW_32;
  };
}
