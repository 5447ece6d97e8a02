import { z } from 'zod';
import { outputProvider } from '../provider.js';
import { ConsoleSink } from './console-sink.js';

/** NDJSON on standard output, one decision a line (uncompressed unless asked). */
export const consoleOutput = outputProvider({
  type: 'console',
  fields: {
    // a field every output has, given another default here: NDJSON on a terminal is read as it is
    compression: z.enum(['gzip', 'none']).default('none'),
  },
  createSink: () => new ConsoleSink(),
  target: () => 'console://stdout',
  // no reader: what went to stdout cannot be read back, so `sluice query` and the console refuse it
});
