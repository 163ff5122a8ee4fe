/**
 * Test support: the integer `#define`s of a C guest header in guests/lib/, so a test can hold the
 * header's numbers to the TypeScript constants they mirror. Not part of the API.
 */

import { readFileSync } from 'node:fs';

/** `#define NAME value` lines of guests/lib/`file` with an integer value (decimal or hex, an optional u/l suffix). */
export function guestHeaderDefines(file: string): ReadonlyMap<string, number> {
  const text = readFileSync(new URL(`../../guests/lib/${file}`, import.meta.url), 'utf8');
  const defines = new Map<string, number>();
  for (const match of text.matchAll(/^#define\s+(\w+)\s+(0x[0-9a-f]+|\d+)[ul]*\b/gim)) {
    const [, name, value] = match;
    if (name !== undefined && value !== undefined) defines.set(name, Number(value));
  }
  return defines;
}
