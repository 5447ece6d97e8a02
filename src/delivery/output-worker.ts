import type { Logger } from 'pino';
import { CorruptChunkError, type ChunkMeta, type DecisionBuffer, type SealedBatch } from '../buffer/types.js';
import type { DeadLetter } from './dead-letter.js';
import { RateLimitedLog } from '../observability/rate-limited-log.js';
import type { OutputConfig } from '../config/schema.js';
import { md5, RefusedDecisionsError, type Sink, type StoredObject } from '../sinks/types.js';
import { attemptUntilDone, retryForever, type Failure, type RetryPolicy } from './attempts.js';
import { DecisionBatcher } from './batching/decision-batcher.js';
import { bufferLines, contentType, encodeLines, keyFieldsOf, transformLines } from './encode.js';
import { parquetDecisionsObject, storedChunks, unreadableChunk } from './parquet-encoder.js';
import { bodyBuffers } from './body-buffers.js';
import { keyLayout, type KeyFields, type KeyLayout } from './key-layouts.js';
import type { OutputMetrics } from '../observability/metrics.js';
import { redactUrlsIn } from '../sinks/redact-url.js';
import type { DecisionTransform } from '../transforms/decision-transform.js';
import { States } from './states.js';
import { DEFAULT_ROW_GROUP_BYTES } from '../formats/parquet-options.js';

/**
 * Delivers one decision output from its own position in the buffer: a DecisionBatcher (the batching core)
 * closes and seals its batches, this worker uploads them and reports how the output is doing.
 *
 * Its states, each a named state machine with asserted transitions:
 *
 *   lifecycle   created ──start──> running ──drain──> draining
 *                  │                  │                  │
 *                  └──────────────────┴──────stop────────┴──> stopped
 *     running: passes read, close and seal batches when they are due; draining: every open batch is closed
 *     at once (a shutdown); stopped: nothing starts any more, uploads in flight are aborted (what is not
 *     delivered stays in the buffer for the next start).
 *
 *   pass        idle ──pump──> passing ──pump──> again
 *                 ^              │  ^             │
 *                 └──────────────┘  └─────────────┘
 *     a pump during a pass (an append, a finished upload) does not start a second pass inside the first: it
 *     asks for one more pass after it (`again`), so re-entrant pumps collapse into one.
 *
 * Each batch goes open -> closed -> sealed -> in_flight -> done (batching/lifecycle.ts); an upload is retried
 * forever with backoff (attempts.ts): the decisions are acknowledged and may not be given up.
 */
export type OutputState = 'ok' | 'retrying' | 'failing';

export interface OutputStatus {
  name: string;
  type: string;
  target: string;
  state: OutputState;
  last_error: { message: string; code?: string; at: string } | null;
  delivered: { events: number; objects: number; bytes: number };
  dropped: number;
  /** Decisions set aside in data_dir/dead-letter instead of written (rules failed on them, or a corrupt chunk). */
  dead_letter: { events: number; file: string };
  retries: number;
  pending_batches: number;
  cursor: number;
}

/** How far past the cursor an output reads before its uploads catch up: keeps memory flat under a backlog. */
const READ_AHEAD_BATCHES_PER_UPLOAD = 2;

type Lifecycle = 'created' | 'running' | 'draining' | 'stopped';
type Pass = 'idle' | 'passing' | 'again';

export class OutputWorker {
  readonly name: string;
  private readonly layout: KeyLayout;
  /** Gzip NDJSON without rules: objects are the stored (compressed) chunks, concatenated. */
  private readonly concatenates: boolean;
  private readonly batcher: DecisionBatcher;
  /** Uploads, the building of an object and the record of a delivery: retried forever, with backoff. */
  private readonly retry: RetryPolicy;
  private readonly abort = new AbortController();
  private readonly lifecycle = new States<Lifecycle>('output worker', 'created', {
    created: ['running', 'draining', 'stopped'],
    running: ['draining', 'stopped'],
    draining: ['stopped'],
    stopped: [],
  });
  private readonly pass = new States<Pass>('output worker pass', 'idle', {
    idle: ['passing'],
    passing: ['again', 'idle'],
    again: ['passing', 'idle'],
  });
  private timer: NodeJS.Timeout | undefined;
  private idleWaiters: Array<() => void> = [];
  private lastError: OutputStatus['last_error'] = null;
  private readonly delivered = { events: 0, objects: 0, bytes: 0 };
  private retries = 0;
  /** Batches whose last try failed, and whether retrying can fix it: the output is ok only when there are none. */
  private readonly failingBatches = new Map<SealedBatch, boolean>();
  /** The last pass failed (an error of Sluice itself, e.g. reading the buffer): cleared by the next good pass. */
  private passFailed = false;
  /** Errors that repeat on every retry are logged once a minute, with how many were left out. */
  private readonly errorLog: RateLimitedLog;
  /** Decisions the output's drop rules kept out of its objects. */
  private dropped = 0;

  constructor(
    private readonly config: OutputConfig,
    private readonly buffer: DecisionBuffer,
    private readonly sink: Sink,
    private readonly log: Logger,
    private readonly deadLetter: DeadLetter,
    private readonly transform?: DecisionTransform,
    private readonly metrics?: OutputMetrics,
  ) {
    this.name = config.name;
    this.errorLog = new RateLimitedLog(log);
    this.layout = keyLayout(config.key);
    this.concatenates =
      config.format === 'ndjson' &&
      config.compression === 'gzip' &&
      config.compression_level === undefined &&
      transform === undefined &&
      !this.layout.needsDecisions &&
      !this.layout.perDecision;
    this.retry = retryForever({ initial: config.retry.initial_backoff, max: config.retry.max_backoff });
    this.batcher = new DecisionBatcher(buffer, {
      output: config.name,
      // 1 for layouts of one object per decision
      limits: {
        maxEvents: this.layout.perDecision ? 1 : config.batch.max_events,
        maxBytes: config.batch.max_bytes,
        maxAge: config.batch.max_age,
      },
      byInstance: this.layout.byInstance,
      wholeChunks: this.concatenates,
      readAhead: config.upload_concurrency * READ_AHEAD_BATCHES_PER_UPLOAD,
    });
    const restored = this.batcher.restored;
    if (restored.length > 0)
      this.log.info({ output: this.name, batches: restored.length }, 'uploading batches sealed before the restart');
    // Batches sealed under another key, format or compression (the config changed across the restart) go out
    // as they were named then: under the new settings their objects would be written a second time.
    const shape = shapeOf(config);
    const before = buffer.outputShape(config.name);
    if (before !== undefined && before !== shape && restored.length > 0) {
      const [key, format, compression, parquet] = JSON.parse(before) as [
        string,
        OutputConfig['format'],
        OutputConfig['compression'],
        OutputConfig['parquet'] | undefined,
      ];
      this.legacy = {
        layout: keyLayout(key),
        encoding: { ...config, key, format, compression, parquet } as OutputConfig,
        batches: new Set(restored),
      };
      this.log.warn(
        { output: this.name, batches: restored.length, was: { key, format, compression } },
        "the output's key, format or compression changed: batches sealed before go out as they were named then",
      );
    } else if (before !== shape) {
      buffer.setOutputShape(config.name, shape);
    }
  }

  /** Batches sealed before a change of key, format or compression, with the settings they were sealed under. */
  private legacy: { layout: KeyLayout; encoding: OutputConfig; batches: Set<SealedBatch> } | undefined;

  /** The key layout and encoding a batch is written with: its own, if it was sealed under older settings. */
  private shapeFor(batch: SealedBatch): { layout: KeyLayout; encoding: OutputConfig; current: boolean } {
    if (this.legacy?.batches.has(batch))
      return { layout: this.legacy.layout, encoding: this.legacy.encoding, current: false };
    return { layout: this.layout, encoding: this.config, current: true };
  }

  start(): void {
    this.lifecycle.to('running');
    this.buffer.onAppend(() => this.pump());
    const tick = Math.max(50, Math.min(1000, this.config.batch.max_age / 4));
    this.timer = setInterval(() => this.pump(), tick);
    this.timer.unref();
    this.pump();
  }

  status(): OutputStatus {
    return {
      name: this.name,
      type: this.config.type,
      target: this.sink.target,
      state: this.state(),
      last_error: this.lastError,
      delivered: { ...this.delivered },
      dropped: this.dropped,
      dead_letter: { events: this.deadLetter.count(this.name), file: this.deadLetter.fileOf(this.name) },
      retries: this.retries,
      pending_batches: this.batcher.pending,
      cursor: this.batcher.cursor,
    };
  }

  /**
   * Seals every open batch and uploads what is sealed, until done or the deadline passes. What is not
   * delivered by then stays in the buffer for the next start.
   */
  async drain(deadline: number): Promise<boolean> {
    if (this.lifecycle.is('stopped')) return false;
    if (!this.lifecycle.is('draining')) this.lifecycle.to('draining');
    // The waiter goes first: this very pump may already find the output idle.
    const idle = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    this.pump();
    // Not unref'd: the process must stay up until the drain ends or the deadline passes.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(resolve, Math.max(0, deadline - Date.now()), 'timeout');
    });
    const result = await Promise.race([idle, timeout]);
    clearTimeout(timer);
    return result !== 'timeout';
  }

  stop(): void {
    if (this.lifecycle.is('stopped')) return;
    this.lifecycle.to('stopped');
    if (this.timer) clearInterval(this.timer);
    this.abort.abort();
    this.sink.close();
  }

  private get stopped(): boolean {
    return this.lifecycle.is('stopped');
  }

  /** One pass: read what is new, seal what is due, start uploads. Re-entrant calls collapse into one more pass. */
  pump(): void {
    if (this.stopped) return;
    if (!this.pass.is('idle')) {
      if (this.pass.is('passing')) this.pass.to('again');
      return;
    }
    this.pass.to('passing');
    try {
      do {
        if (this.pass.is('again')) this.pass.to('passing');
        this.onePass();
      } while (this.pass.is('again') && !this.stopped);
      this.passFailed = false;
    } catch (err) {
      this.fail(err as Error);
    } finally {
      this.pass.to('idle');
    }
  }

  private onePass(): void {
    // if the seal throws, the batches stay closed (and hold the cursor) until a later pass seals them
    this.batcher.fill(Date.now(), this.lifecycle.is('draining'));
    for (const batch of this.batcher.takeReady(this.config.upload_concurrency)) void this.deliver(batch);
    this.batcher.moveCursor();
    if (this.batcher.idle()) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  /**
   * The object of a sealed batch, with the output's rules applied; undefined when nothing is left to write
   * (the rules dropped every decision, or every one was set aside). Everything it derives from is fixed with
   * the batch, so it is the same object on every try. `setAside` counts the decisions that went to the dead
   * letter instead: a decision the rules failed on, a chunk whose checksum fails.
   */
  async objectOf(batch: SealedBatch, setAside = { events: 0 }): Promise<StoredObject | undefined> {
    // a chunk is set aside once, should the batch be read twice (a Parquet encoding read again, below)
    const corrupt = new Set<number>();
    const onCorrupt = (err: CorruptChunkError) => {
      if (corrupt.has(err.pos)) return;
      corrupt.add(err.pos);
      const first = Math.max(err.pos, batch.first);
      const last = Math.min(err.lastPos, batch.last);
      this.setAside(setAside, {
        reason: 'corrupt_chunk',
        first,
        last,
        events: last - first + 1,
        error: err.message,
        payload: err.payload,
      });
    };
    const { layout, encoding, current } = this.shapeFor(batch);
    const metas = this.buffer.streamChunks(batch.partition, batch.hour, batch.instance, batch.first, batch.last);
    const receivedAt = metas[0]?.receivedAt ?? Date.now();
    if (
      current &&
      this.concatenates &&
      metas.every((m) => m.compressed && m.pos >= batch.first && m.pos + m.count - 1 <= batch.last)
    ) {
      return this.concatenated(batch, metas, receivedAt, onCorrupt);
    }
    const onUnprocessable = (decision: string, err: Error) => {
      this.setAside(setAside, {
        reason: 'rule_failed',
        first: batch.first,
        last: batch.last,
        events: 1,
        error: err.message,
        decision,
      });
    };
    const read = () => {
      const lines = bufferLines(this.buffer, batch, onCorrupt);
      return this.transform ? transformLines(lines, this.transform, onUnprocessable) : lines;
    };
    // A layout that names objects by their decisions reads (and transforms) the batch once, for the key and the
    // body alike; the others stream it into the encoder.
    const groups = layout.needsDecisions ? [...read()] : undefined;
    const lines = () => groups ?? read();
    // Keys name what the object holds: the decisions the rules kept (masks never touch labels, timestamp, decision_id).
    // only the fields keys read are kept: a parsed batch of a million decisions would not fit in memory
    const decisions: KeyFields[] = [];
    if (groups) for (const d of keyFieldsOf(groups)) decisions.push(d);
    if (groups && decisions.length === 0) return undefined;
    const key = layout.key({ output: this.name, bufferId: this.buffer.id, batch, encoding, receivedAt, decisions });
    if (layout.perDecision) {
      // one decision, as its own JSON document (Enterprise OPA's per-decision objects)
      const body = Buffer.from(
        [...lines()]
          .map((b) => b.toString('utf8'))
          .join('')
          .trimEnd(),
      );
      return { key, body, contentType: 'application/json', contentMD5: md5(body) };
    }
    if (encoding.format === 'parquet') {
      // without rules, and unless the key layout read the decisions already, the chunks go to the encoder
      // thread as stored; one that does not gunzip there has the batch read here, where it is set aside
      const asStored = groups === undefined && this.transform === undefined;
      const object = await parquetDecisionsObject(
        asStored ? storedChunks(this.buffer, batch, onCorrupt) : lines(),
        encoding,
        key,
      ).catch((err: unknown) => {
        if (asStored && unreadableChunk(err)) return parquetDecisionsObject(lines(), encoding, key);
        throw err;
      });
      for (const { line, error } of object.unprocessable) onUnprocessable(line, new Error(error));
      const { unprocessable: _, ...stored } = object;
      if (stored.count > 0) return stored;
      stored.releaseBody?.();
      return undefined;
    }
    const object = await encodeLines(lines(), encoding, key);
    if (layout.contentType) object.contentType = layout.contentType;
    if (object.count > 0) return object;
    object.releaseBody?.();
    return undefined;
  }

  /**
   * The object of a batch of whole chunks stored compressed: their gzip members one after the other, which is
   * one valid gzip stream of their NDJSON (RFC 1952: a gzip file is a series of members). Nothing is decoded
   * or compressed again; the same chunks always give the same bytes.
   */
  private concatenated(
    batch: SealedBatch,
    metas: ChunkMeta[],
    receivedAt: number,
    onCorrupt: (err: CorruptChunkError) => void,
  ): (StoredObject & { count: number }) | undefined {
    const members: Buffer[] = [];
    let count = 0;
    for (const meta of metas) {
      try {
        const payload = this.buffer.readStoredPayload(meta.pos);
        if (!payload) throw new Error(`buffer chunk ${meta.pos} of batch ${batch.first}-${batch.last} is missing`);
        members.push(payload);
        count += meta.count;
      } catch (err) {
        if (!(err instanceof CorruptChunkError)) throw err;
        onCorrupt(err);
      }
    }
    if (count === 0) return undefined;
    const key = this.layout.key({
      output: this.name,
      bufferId: this.buffer.id,
      batch,
      encoding: this.config,
      receivedAt,
      decisions: [],
    });
    const body = bodyBuffers.concat(members);
    return {
      key,
      body,
      contentType: this.layout.contentType ?? contentType('ndjson'),
      contentEncoding: 'gzip',
      contentMD5: md5(body),
      count,
      releaseBody: bodyBuffers.releaser(body.buffer),
    };
  }

  private setAside(tally: { events: number }, entry: Parameters<DeadLetter['write']>[1]): void {
    this.deadLetter.write(this.name, entry);
    tally.events += entry.events;
    this.metrics?.deadLettered(this.name, entry.reason, entry.events);
    this.log.error(
      {
        output: this.name,
        reason: entry.reason,
        first_position: entry.first,
        last_position: entry.last,
        err: entry.error,
        file: this.deadLetter.fileOf(this.name),
      },
      'decisions set aside in the dead letter instead of written; the output goes on',
    );
  }

  /**
   * Uploads one sealed batch, retrying with backoff until it lands or the worker stops. An error of Sluice
   * itself while building the object is retried the same way (loudly): a batch never stays in flight unattended.
   */
  private async deliver(batch: SealedBatch): Promise<void> {
    const { signal } = this.abort;
    const setAside = { events: 0 };
    const built = await attemptUntilDone(
      async () => {
        setAside.events = 0;
        return this.objectOf(batch, setAside);
      },
      this.retry,
      {
        signal,
        onFailure: ({ failure }) => {
          this.retries++;
          this.noteError(batch, failure, '(building the object)', true);
        },
      },
    );
    if (!built?.ok) return;
    const object = built.value;
    const key = object?.key ?? '(nothing to write)';
    // every decision dropped by the rules (or set aside): nothing to upload, the batch is done
    if (object) {
      // the body's memory is given back once no attempt will read it again, however the attempts ended
      const bytes = object.body.length;
      let uploaded;
      try {
        uploaded = await attemptUntilDone(
          async () => {
            try {
              await this.sink.put(object, signal);
              return 0;
            } catch (err) {
              // the receiver took every decision but these, each refused alone as too large: set aside, the batch is done
              if (!(err instanceof RefusedDecisionsError)) throw err;
              const tally = { events: 0 };
              for (const r of err.refused)
                this.setAside(tally, {
                  reason: 'too_large',
                  first: batch.first,
                  last: batch.last,
                  events: 1,
                  error: r.error,
                  decision: r.decision,
                });
              return tally.events;
            }
          },
          this.retry,
          {
            signal,
            onFailure: ({ failure }) => {
              this.retries++;
              this.metrics?.failed(this.name, failure.permanent);
              this.noteError(batch, failure, key);
            },
          },
        );
      } finally {
        object.releaseBody?.();
      }
      if (!uploaded?.ok) return;
      const refused = uploaded.value;
      setAside.events += refused;
      const written = ('count' in object ? (object.count as number) : 1) - refused;
      this.delivered.events += written;
      this.dropped += batch.count - written - setAside.events;
      this.metrics?.uploadSeconds(this.name, uploaded.durationMs / 1000);
      this.metrics?.delivered(this.name, written, bytes);
      this.metrics?.dropped(this.name, batch.count - written - setAside.events);
      this.delivered.objects++;
      this.delivered.bytes += bytes;
      this.log.debug({ output: this.name, key, events: written, bytes, attempt: uploaded.attempt }, 'batch delivered');
    }
    if (this.stopped) return;
    if (!object) {
      this.dropped += batch.count - setAside.events;
      this.metrics?.dropped(this.name, batch.count - setAside.events);
    }
    this.recover(batch);
    // Delivered; recording it may still fail (a full disk): it stays in flight, holding the cursor, until it is recorded.
    const recorded = await attemptUntilDone(async () => this.batcher.complete(batch), this.retry, {
      signal,
      onFailure: ({ failure }) => this.fail(failure.error),
    });
    if (!recorded?.ok) return;
    if (this.legacy?.batches.delete(batch) && this.legacy.batches.size === 0) {
      // every batch of the old settings is out: from now on a restart needs no memory of them
      this.legacy = undefined;
      try {
        this.buffer.setOutputShape(this.name, shapeOf(this.config));
      } catch (err) {
        this.fail(err as Error);
      }
    }
    try {
      this.buffer.trim();
    } catch (err) {
      this.fail(err as Error);
    }
    // the next pass in a later turn: a sink that answers at once must not chain passes without end
    setImmediate(() => this.pump());
  }

  /** failing: something retrying cannot fix; retrying: some batch's last try failed; ok otherwise. */
  private state(): OutputState {
    if (this.passFailed) return 'failing';
    for (const permanent of this.failingBatches.values()) if (permanent) return 'failing';
    return this.failingBatches.size > 0 ? 'retrying' : 'ok';
  }

  /** The batch no longer fails. */
  private recover(batch: SealedBatch): void {
    const before = this.state();
    this.failingBatches.delete(batch);
    if (before !== 'ok' && this.state() === 'ok')
      this.log.info({ output: this.name, target: this.sink.target }, 'output delivers again');
  }

  private noteError(
    batch: SealedBatch,
    { error: err, permanent: sinkPermanent, code }: Failure,
    key: string,
    internal = false,
  ): void {
    const permanent = internal || sinkPermanent;
    const wasState = this.state();
    // one batch that cannot be fixed by retrying makes the output failing, whatever the others do
    this.failingBatches.set(batch, permanent);
    // shown unauthenticated in /ready and logged: no URL's userinfo or query values (a sink's error may quote one)
    const message = redactUrlsIn(err.message);
    this.lastError = { message, code, at: new Date().toISOString() };
    const fields = { output: this.name, target: this.sink.target, key, code, err: message };
    if (internal) {
      this.errorLog.error(
        `internal:${err.message}`,
        { ...fields, stack: err.stack },
        'output cannot build an object (an error of Sluice itself); retrying with backoff, decisions stay buffered',
      );
    } else if (permanent) {
      // Retrying cannot fix this one; say it loudly, keep the data, and keep trying in case it gets fixed.
      this.errorLog.error(
        `permanent:${code ?? err.message}`,
        fields,
        'output cannot deliver: fix the bucket, credentials or permissions; decisions stay buffered',
      );
    } else if (wasState === 'ok') {
      this.log.warn(fields, 'upload failed; retrying with backoff');
    }
  }

  /** An error of Sluice itself (not of the sink): the output stops until restarted, loudly. */
  private fail(err: Error): void {
    this.passFailed = true;
    this.lastError = { message: err.message, at: new Date().toISOString() };
    this.errorLog.error(
      `pass:${err.message}`,
      { output: this.name, err },
      'output hit an internal error; it tries again at its next pass, decisions stay buffered',
    );
  }
}

/**
 * What names an output's objects and makes their bytes: a batch sealed under one shape must be written under
 * it. A Parquet file's row groups are part of it (their size changes the bytes, not the key), so that a batch
 * written again after a restart with another row_group_bytes is still the same file.
 */
function shapeOf(config: OutputConfig): string {
  const shape: unknown[] = [config.key, config.format, config.compression];
  if (config.format === 'parquet')
    shape.push({ row_group_bytes: config.parquet?.row_group_bytes ?? DEFAULT_ROW_GROUP_BYTES });
  return JSON.stringify(shape);
}
