/**
 * `npm run bench [filter]`: runs every benchmark in `bench/*.bench.ts`, one JSON object per
 * benchmark on stdout, a readable line per benchmark on stderr.
 */
import { readdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Benchmark } from './harness.ts';

const filter = process.argv[2] ?? '';
const directory = fileURLToPath(new URL('.', import.meta.url));
const modules = readdirSync(directory)
  .filter((file) => file.endsWith('.bench.ts'))
  .sort();

for (const file of modules) {
  const module = (await import(pathToFileURL(`${directory}${file}`).href)) as { benchmarks: readonly Benchmark[] };
  for (const benchmark of module.benchmarks) {
    if (!benchmark.name.includes(filter)) continue;
    const result = await benchmark.run();
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.stderr.write(
      `${result.name.padEnd(56)} median ${String(result.median).padStart(10)} ${result.unit}  (min ${result.min}, max ${result.max}, ${result.samples} samples)\n`,
    );
  }
}
