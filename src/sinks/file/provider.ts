import path from 'node:path';
import { z } from 'zod';
import { outputProvider } from '../provider.js';
import { FileSink } from './file-sink.js';
import { FileObjects } from './file-objects.js';

/** Objects as files under a directory, with the keys and bytes an s3 output would write; read back from there. */
export const fileOutput = outputProvider({
  type: 'file',
  storesObjects: true,
  fields: {
    // resolved when the config is read: a relative path means the directory `sluice` was started in
    path: z
      .string()
      .min(1)
      .transform((p) => path.resolve(p)),
  },
  createSink: (o) => new FileSink(o.path),
  target: (o) => `file://${o.path}`,
  reader: (o) => new FileObjects(o.path),
  location: (o) => ({ root: o.path.endsWith('/') ? o.path : `${o.path}/` }),
});
