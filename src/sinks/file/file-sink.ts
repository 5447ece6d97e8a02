import { mkdir, open, rename } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { SinkError, type Sink, type StoredObject } from '../types.js';

/**
 * Objects as files under a directory, with the same keys and bytes an S3 output would write.
 * A file appears whole or not at all: it is written and fsync'd under a temporary name, renamed, and its
 * directory fsync'd, so that a delivered object survives a power loss as the buffer's record of it does.
 */
export class FileSink implements Sink {
  readonly target: string;

  constructor(private readonly root: string) {
    this.target = `file://${root}`;
  }

  async put(object: StoredObject): Promise<void> {
    const file = path.resolve(this.root, object.key);
    if (!file.startsWith(this.root + path.sep)) {
      throw new SinkError(`key "${object.key}" points outside ${this.root}`, true, 'InvalidKey');
    }
    const temp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await mkdir(path.dirname(file), { recursive: true });
      const handle = await open(temp, 'w');
      try {
        await handle.writeFile(object.body);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, file);
      // the rename itself is durable only once its directory is: the output marks the batch delivered next
      const dir = await open(path.dirname(file), 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      // A full disk or a read-only mount needs an operator; other errors may pass.
      const permanent = e.code === 'EACCES' || e.code === 'EROFS' || e.code === 'EPERM' || e.code === 'ENOTDIR';
      throw new SinkError(`cannot write ${file}: ${e.message}`, permanent, e.code, { cause: err });
    }
  }

  close(): void {}
}
