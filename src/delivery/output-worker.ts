import type { Logger } from 'pino';
import { CorruptChunkError, type ChunkMeta, type DecisionBuffer, type SealedBatch } from '../buffer/types.js';
import type { DeadLetter } from './dead-letter.js';
import { RateLimitedLog } from '../observability/rate-limited-log.js';
import type { OutputConfig } from '../config/schema.js';
import { md5, RefusedDecisionsError, SinkError, type Sink, type StoredObject } from '../sinks/types.js';
import { backoffDelay, pause } from './backoff.js';
import { bufferLines, contentType, encodeLines, lineLengths, parsedDecisions, transformLines } from './encode.js';
import { keyLayout, type KeyFields, type KeyLayout } from './key-layouts.js';
import type { OutputMetrics } from '../observability/metrics.js';
import { redactUrlsIn } from '../sinks/redact-url.js';
import type { DecisionTransform } from '../transforms/decision-transform.js';

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

/** Decisions of one partition and UTC hour that are waiting for their batch to close. */
interface OpenBatch extends Omit<SealedBatch, 'output'> {
  /** Arrival time of its first decision: max_age counts from here. */
  openedAt: number;
}

/** How far past the cursor an output reads before its uploads catch up: keeps memory flat under a backlog. */
const READ_AHEAD_BATCHES_PER_UPLOAD = 2;

/** Streams (partition, hour, instance) with an open batch at most; well above 100 partitions x a few hours. */
const MAX_OPEN_BATCHES = 1000;

/**
 * Delivers one output from its own position in the buffer.
 *
 * Reads chunk metadata in position order, groups decisions per stream (partition + hour) into open batches,
 * and seals a batch when it reaches max_events or max_bytes, or is max_age old. A sealed batch is recorded in
 * the buffer BEFORE its upload: its key derives from its first and last positions, so a retry, or the upload
 * after a crash, writes the same key with the same bytes. The cursor (all positions <= it delivered) is the
 * lowest position still open or in flight, minus one; the buffer drops what every cursor has passed.
 */
export class OutputWorker {
  readonly name: string;
  private readonly layout: KeyLayout;
  /** A batch's decisions at most: 1 for layouts of one object per decision. */
  private readonly maxEvents: number;
  /** Gzip NDJSON without rules: objects are the stored (compressed) chunks, concatenated. */
  private readonly concatenates: boolean;
  private readPos: number;
  private cursor: number;
  private readonly open = new Map<string, OpenBatch>();
  /** Per stream, the last position already in a sealed or delivered batch (known from before a restart). */
  private readonly sealedUpto = new Map<string, number>();
  private readonly queue: SealedBatch[] = [];
  /** Batches closed but not yet durably sealed (their seal failed): never uploaded before they are. */
  private unsealed: SealedBatch[] = [];
  private readonly inflight = new Set<SealedBatch>();
  private readonly abort = new AbortController();
  private pumping = false;
  private pumpAgain = false;
  private draining = false;
  private stopped = false;
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
    this.maxEvents = this.layout.perDecision ? 1 : config.batch.max_events;
    this.concatenates = config.format === 'ndjson' && config.compression === 'gzip' && config.compression_level === undefined
      && transform === undefined && !this.layout.needsDecisions && !this.layout.perDecision;
    this.cursor = buffer.cursor(config.name);
    this.readPos = this.cursor;
    for (const b of buffer.deliveredBatches(config.name)) this.noteSealed(b);
    for (const b of buffer.sealedBatches(config.name)) {
      this.noteSealed(b);
      this.queue.push(b);
    }
    if (this.queue.length > 0) this.log.info({ output: this.name, batches: this.queue.length }, 'uploading batches sealed before the restart');
    // Batches sealed under another key, format or compression (the config changed across the restart) go out
    // as they were named then: under the new settings their objects would be written a second time.
    const shape = shapeOf(config);
    const before = buffer.outputShape(config.name);
    if (before !== undefined && before !== shape && this.queue.length > 0) {
      const [key, format, compression] = JSON.parse(before) as [string, OutputConfig['format'], OutputConfig['compression']];
      this.legacy = { layout: keyLayout(key), encoding: { ...config, key, format, compression } as OutputConfig, batches: new Set(this.queue) };
      this.log.warn({ output: this.name, batches: this.queue.length, was: { key, format, compression } },
        'the output\'s key, format or compression changed: batches sealed before go out as they were named then');
    } else if (before !== shape) {
      buffer.setOutputShape(config.name, shape);
    }
  }

  /** Batches sealed before a change of key, format or compression, with the settings they were sealed under. */
  private legacy: { layout: KeyLayout; encoding: OutputConfig; batches: Set<SealedBatch> } | undefined;

  /** The key layout and encoding a batch is written with: its own, if it was sealed under older settings. */
  private shapeFor(batch: SealedBatch): { layout: KeyLayout; encoding: OutputConfig; current: boolean } {
    if (this.legacy?.batches.has(batch)) return { layout: this.legacy.layout, encoding: this.legacy.encoding, current: false };
    return { layout: this.layout, encoding: this.config, current: true };
  }

  start(): void {
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
      pending_batches: this.queue.length + this.inflight.size,
      cursor: this.cursor,
    };
  }

  /**
   * Seals every open batch and uploads what is sealed, until done or the deadline passes. What is not
   * delivered by then stays in the buffer for the next start.
   */
  async drain(deadline: number): Promise<boolean> {
    this.draining = true;
    // The waiter goes first: this very pump may already find the output idle.
    const idle = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    this.pump();
    // Not unref'd: the process must stay up until the drain ends or the deadline passes.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => { timer = setTimeout(resolve, Math.max(0, deadline - Date.now()), 'timeout'); });
    const result = await Promise.race([idle, timeout]);
    clearTimeout(timer);
    return result !== 'timeout';
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.abort.abort();
    this.sink.close();
  }

  /** One pass: read what is new, seal what is due, start uploads. Re-entrant calls collapse into one more pass. */
  pump(): void {
    if (this.stopped) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        this.pass();
      } while (this.pumpAgain && !this.stopped);
      this.passFailed = false;
    } catch (err) {
      this.fail(err as Error);
    } finally {
      this.pumping = false;
    }
  }

  private pass(): void {
    // batches closed by an earlier pass whose seal did not commit (a full disk): sealed first, in order
    const sealed = this.unsealed;
    const maxQueued = this.config.upload_concurrency * READ_AHEAD_BATCHES_PER_UPLOAD;
    // Reads ahead only until enough batches wait for an upload slot: a chunk of 100,000 decisions in a layout
    // of one object per decision is sealed a few batches per pass, not all at once.
    const room = () => maxQueued - (this.queue.length + sealed.length + this.inflight.size);
    while (room() > 0) {
      const metas = this.buffer.readChunkMetas(this.readPos, 256);
      if (metas.length === 0) break;
      for (const meta of metas) {
        // Decisions spread over thousands of hours or instances would open a batch each: past
        // MAX_OPEN_BATCHES the oldest open batch is sealed early, which also takes room.
        if (this.open.size >= MAX_OPEN_BATCHES) {
          const [key, oldest] = this.open.entries().next().value!;
          this.open.delete(key);
          sealed.push(this.toSealed(oldest));
          if (room() <= 0) break;
        }
        this.assign(meta, sealed, room);
        if (room() <= 0) break;
      }
    }
    const now = Date.now();
    // Open batches are sealed when due, while there is room for them to wait (the rest at a later pass).
    for (const [key, batch] of this.open) {
      if (room() <= 0) break;
      if (this.draining || now - batch.openedAt >= this.config.batch.max_age) {
        this.open.delete(key);
        sealed.push(this.toSealed(batch));
      }
    }
    if (sealed.length > 0) {
      // if the seal throws, the batches stay here (and hold the cursor) until a later pass seals them
      this.buffer.seal(sealed);
      this.unsealed = [];
      for (const batch of sealed) this.queue.push(batch);
    }
    while (this.inflight.size < this.config.upload_concurrency && this.queue.length > 0) {
      const batch = this.queue.shift()!;
      this.inflight.add(batch);
      void this.deliver(batch);
    }
    this.moveCursor();
    if (this.queue.length === 0 && this.inflight.size === 0 && this.open.size === 0 && this.unsealed.length === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  /**
   * Adds the decisions of a chunk beyond readPos to its stream's open batch, sealing batches that fill up,
   * while `room()` allows more sealed batches; readPos then names the last decision assigned, so the next
   * pass goes on inside the same chunk.
   */
  private assign(meta: ChunkMeta, sealed: SealedBatch[], room: () => number): void {
    const last = meta.pos + meta.count - 1;
    const instance = this.layout.byInstance ? meta.instance : null;
    const key = this.stream(meta.partition, meta.hour, instance);
    // Already in a batch: up to what batches of this partition and hour sealed, for every instance ('*') or
    // for this chunk's own (batches of both kinds exist when the layout changed across a restart)
    const covered = Math.max(this.sealedUpto.get(this.stream(meta.partition, meta.hour, null)) ?? 0,
      this.sealedUpto.get(this.stream(meta.partition, meta.hour, meta.instance)) ?? 0);
    let from = Math.max(this.readPos + 1, meta.pos, covered + 1);
    const { maxEvents } = this;
    const { max_bytes: maxBytes } = this.config.batch;
    while (from <= last && room() > 0) {
      let batch = this.open.get(key);
      if (!batch) {
        batch = { partition: meta.partition, hour: meta.hour, instance, first: from, last: from - 1, count: 0, bytes: 0, openedAt: meta.receivedAt };
        this.open.set(key, batch);
      }
      const whole = from === meta.pos;
      const fitsWhole = whole && batch.count + meta.count <= maxEvents && batch.bytes + meta.bytes <= maxBytes;
      if (!fitsWhole && this.concatenates && whole && batch.count > 0 && meta.count <= maxEvents && meta.bytes <= maxBytes) {
        // Objects made of stored chunks close on chunk boundaries (max_events and max_bytes are "at most"):
        // the batch is sealed and the chunk opens the next one, whole.
        this.open.delete(key);
        sealed.push(this.toSealed(batch));
        continue;
      }
      const lengths = fitsWhole ? undefined : this.lineLengthsOf(meta);
      if (lengths === undefined || lengths === 'corrupt') {
        // The chunk fits whole, or its bytes cannot be trusted to split: it goes into the batch as one piece
        // (delivery then sets a corrupt chunk aside as a whole).
        if (lengths === 'corrupt' && batch.count > 0) {
          this.open.delete(key);
          sealed.push(this.toSealed(batch));
          continue;
        }
        batch.count += last - from + 1;
        batch.bytes += meta.bytes;
        batch.last = last;
        from = last + 1;
      } else {
        // The chunk does not fit whole: add decision by decision.
        while (from <= last) {
          const size = lengths[from - meta.pos]!;
          if (batch.count > 0 && (batch.count + 1 > maxEvents || batch.bytes + size > maxBytes)) break;
          batch.count++;
          batch.bytes += size;
          batch.last = from;
          from++;
        }
      }
      if (batch.count >= maxEvents || batch.bytes >= maxBytes || from <= last) {
        this.open.delete(key);
        sealed.push(this.toSealed(batch));
      }
    }
    // `from` may have jumped past the chunk (its decisions were in batches sealed before a restart): readPos
    // must not follow it there, over chunks of other streams not read yet
    this.readPos = Math.max(this.readPos, Math.min(from - 1, last));
  }

  /** Line lengths of the chunk read last: a large chunk is split over many passes, and read once. */
  private lengthsCache: { pos: number; lengths: number[] | 'corrupt' } | undefined;

  private lineLengthsOf(meta: ChunkMeta): number[] | 'corrupt' {
    if (this.lengthsCache?.pos !== meta.pos) {
      let lengths: number[] | 'corrupt';
      try {
        lengths = lineLengths(this.buffer.readChunk(meta.pos)!.payload);
      } catch (err) {
        if (!(err instanceof CorruptChunkError)) throw err;
        lengths = 'corrupt';
      }
      this.lengthsCache = { pos: meta.pos, lengths };
    }
    return this.lengthsCache.lengths;
  }

  private toSealed(batch: OpenBatch): SealedBatch {
    const sealed: SealedBatch = {
      output: this.name, partition: batch.partition, hour: batch.hour, instance: batch.instance, first: batch.first, last: batch.last,
      count: batch.count, bytes: batch.bytes,
    };
    this.noteSealed(sealed);
    return sealed;
  }

  private noteSealed(batch: SealedBatch): void {
    const key = this.stream(batch.partition, batch.hour, batch.instance);
    this.sealedUpto.set(key, Math.max(this.sealedUpto.get(key) ?? 0, batch.last));
  }

  /** A stream: the decisions one batch may hold (per partition and hour, and per OPA instance for some layouts). */
  private stream(partition: string, hour: string, instance: string | null): string {
    return `${partition}\u0000${hour}\u0000${instance ?? '*'}`;
  }

  /**
   * The object of a sealed batch, with the output's rules applied; undefined when nothing is left to write
   * (the rules dropped every decision, or every one was set aside). Everything it derives from is fixed with
   * the batch, so it is the same object on every try. `setAside` counts the decisions that went to the dead
   * letter instead: a decision the rules failed on, a chunk whose checksum fails.
   */
  async objectOf(batch: SealedBatch, setAside = { events: 0 }): Promise<StoredObject | undefined> {
    const onCorrupt = (err: CorruptChunkError) => {
      const first = Math.max(err.pos, batch.first);
      const last = Math.min(err.lastPos, batch.last);
      this.setAside(setAside, { reason: 'corrupt_chunk', first, last, events: last - first + 1, error: err.message, payload: err.payload });
    };
    const { layout, encoding, current } = this.shapeFor(batch);
    const metas = this.buffer.streamChunks(batch.partition, batch.hour, batch.instance, batch.first, batch.last);
    const receivedAt = metas[0]?.receivedAt ?? Date.now();
    if (current && this.concatenates && metas.every((m) => m.compressed && m.pos >= batch.first && m.pos + m.count - 1 <= batch.last)) {
      return this.concatenated(batch, metas, receivedAt, onCorrupt);
    }
    const onUnprocessable = (decision: string, err: Error) => {
      this.setAside(setAside, { reason: 'rule_failed', first: batch.first, last: batch.last, events: 1, error: err.message, decision });
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
    if (groups) for (const d of parsedDecisions(groups)) decisions.push({ decision_id: d.decision_id, timestamp: d.timestamp });
    if (groups && decisions.length === 0) return undefined;
    const key = layout.key({ output: this.name, bufferId: this.buffer.id, batch, encoding, receivedAt, decisions });
    if (layout.perDecision) {
      // one decision, as its own JSON document (Enterprise OPA's per-decision objects)
      const body = Buffer.from([...lines()].map((b) => b.toString('utf8')).join('').trimEnd());
      return { key, body, contentType: 'application/json', contentMD5: md5(body) };
    }
    const object = await encodeLines(lines(), encoding, key);
    if (layout.contentType) object.contentType = layout.contentType;
    return object.count > 0 ? object : undefined;
  }

  /**
   * The object of a batch of whole chunks stored compressed: their gzip members one after the other, which is
   * one valid gzip stream of their NDJSON (RFC 1952: a gzip file is a series of members). Nothing is decoded
   * or compressed again; the same chunks always give the same bytes.
   */
  private concatenated(batch: SealedBatch, metas: ChunkMeta[], receivedAt: number, onCorrupt: (err: CorruptChunkError) => void): StoredObject & { count: number } | undefined {
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
    const key = this.layout.key({ output: this.name, bufferId: this.buffer.id, batch, encoding: this.config, receivedAt, decisions: [] });
    const body = Buffer.concat(members);
    return {
      key, body, contentType: this.layout.contentType ?? contentType('ndjson'), contentEncoding: 'gzip', contentMD5: md5(body), count,
    };
  }

  private setAside(tally: { events: number }, entry: Parameters<DeadLetter['write']>[1]): void {
    this.deadLetter.write(this.name, entry);
    tally.events += entry.events;
    this.metrics?.deadLettered(this.name, entry.reason, entry.events);
    this.log.error({ output: this.name, reason: entry.reason, first_position: entry.first, last_position: entry.last, err: entry.error, file: this.deadLetter.fileOf(this.name) },
      'decisions set aside in the dead letter instead of written; the output goes on');
  }

  /**
   * Uploads one sealed batch, retrying with backoff until it lands or the worker stops. An error of Sluice
   * itself while building the object is retried the same way (loudly): a batch never stays in flight unattended.
   */
  private async deliver(batch: SealedBatch): Promise<void> {
    const backoff = { initial: this.config.retry.initial_backoff, max: this.config.retry.max_backoff };
    const setAside = { events: 0 };
    let object: StoredObject | undefined;
    for (let attempt = 1; ; attempt++) {
      if (this.stopped) return;
      try {
        setAside.events = 0;
        object = await this.objectOf(batch, setAside);
        break;
      } catch (err) {
        if (this.stopped) return;
        this.retries++;
        this.noteError(batch, err as Error, '(building the object)', true);
        await pause(backoffDelay(backoff, attempt), this.abort.signal);
      }
    }
    const key = object?.key ?? '(nothing to write)';
    // every decision dropped by the rules (or set aside): nothing to upload, the batch is done
    for (let attempt = 1; object && !this.stopped; attempt++) {
      const started = performance.now();
      try {
        let refused = 0;
        try {
          await this.sink.put(object, this.abort.signal);
        } catch (err) {
          // the receiver took every decision but these, each refused alone as too large: set aside, the batch is done
          if (!(err instanceof RefusedDecisionsError)) throw err;
          const tally = { events: 0 };
          for (const r of err.refused) this.setAside(tally, { reason: 'too_large', first: batch.first, last: batch.last, events: 1, error: r.error, decision: r.decision });
          refused = tally.events;
          setAside.events += refused;
        }
        const written = ('count' in object ? (object.count as number) : 1) - refused;
        this.delivered.events += written;
        this.dropped += batch.count - written - setAside.events;
        this.metrics?.uploadSeconds(this.name, (performance.now() - started) / 1000);
        this.metrics?.delivered(this.name, written, object.body.length);
        this.metrics?.dropped(this.name, batch.count - written - setAside.events);
        this.delivered.objects++;
        this.delivered.bytes += object.body.length;
        this.log.debug({ output: this.name, key, events: written, bytes: object.body.length, attempt }, 'batch delivered');
        break;
      } catch (err) {
        if (this.stopped) return;
        this.retries++;
        this.metrics?.failed(this.name, err instanceof SinkError && err.permanent);
        this.noteError(batch, err as Error, key);
        await pause(backoffDelay(backoff, attempt), this.abort.signal);
      }
    }
    if (this.stopped) return;
    if (!object) {
      this.dropped += batch.count - setAside.events;
      this.metrics?.dropped(this.name, batch.count - setAside.events);
    }
    this.recover(batch);
    // Delivered; recording it may still fail (a full disk). It stays in flight, holding the cursor, until it is
    // recorded: were it dropped, the cursor could pass a batch the buffer still lists as sealed.
    for (let attempt = 1; ; attempt++) {
      this.inflight.delete(batch);
      try {
        this.buffer.complete(batch, this.lowWatermark());
        break;
      } catch (err) {
        this.inflight.add(batch);
        if (this.stopped) return;
        this.fail(err as Error);
        await pause(backoffDelay(backoff, attempt), this.abort.signal);
      }
    }
    this.cursor = Math.max(this.cursor, this.lowWatermark());
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
    if (before !== 'ok' && this.state() === 'ok') this.log.info({ output: this.name, target: this.sink.target }, 'output delivers again');
  }

  private noteError(batch: SealedBatch, err: Error, key: string, internal = false): void {
    const permanent = internal || (err instanceof SinkError && err.permanent);
    const code = err instanceof SinkError ? err.code : undefined;
    const wasState = this.state();
    // one batch that cannot be fixed by retrying makes the output failing, whatever the others do
    this.failingBatches.set(batch, permanent);
    // shown unauthenticated in /ready and logged: no URL's userinfo or query values (a sink's error may quote one)
    const message = redactUrlsIn(err.message);
    this.lastError = { message, code, at: new Date().toISOString() };
    const fields = { output: this.name, target: this.sink.target, key, code, err: message };
    if (internal) {
      this.errorLog.error(`internal:${err.message}`, { ...fields, stack: err.stack }, 'output cannot build an object (an error of Sluice itself); retrying with backoff, decisions stay buffered');
    } else if (permanent) {
      // Retrying cannot fix this one; say it loudly, keep the data, and keep trying in case it gets fixed.
      this.errorLog.error(`permanent:${code ?? err.message}`, fields, 'output cannot deliver: fix the bucket, credentials or permissions; decisions stay buffered');
    } else if (wasState === 'ok') {
      this.log.warn(fields, 'upload failed; retrying with backoff');
    }
  }

  /** An error of Sluice itself (not of the sink): the output stops until restarted, loudly. */
  private fail(err: Error): void {
    this.passFailed = true;
    this.lastError = { message: err.message, at: new Date().toISOString() };
    this.errorLog.error(`pass:${err.message}`, { output: this.name, err }, 'output hit an internal error; it tries again at its next pass, decisions stay buffered');
  }

  /**
   * The highest position with everything at or below it delivered: below the first decision of every batch
   * not yet delivered, and never past readPos (decisions beyond it are not in any batch yet, even when
   * batches sealed before a restart, further on, are already queued).
   */
  private lowWatermark(): number {
    let lowest = this.readPos + 1;
    for (const b of this.open.values()) lowest = Math.min(lowest, b.first);
    for (const b of this.queue) lowest = Math.min(lowest, b.first);
    for (const b of this.inflight) lowest = Math.min(lowest, b.first);
    for (const b of this.unsealed) lowest = Math.min(lowest, b.first);
    return lowest - 1;
  }

  private moveCursor(): void {
    const next = this.lowWatermark();
    // Persisted here only when nothing is in flight (e.g. decisions skipped after a restart); uploads persist it.
    if (next > this.cursor && this.inflight.size === 0) {
      this.buffer.setCursor(this.name, next);
      this.cursor = next;
      this.buffer.trim();
    }
  }
}

/** What names an output's objects: a batch sealed under one shape must be written under it. */
function shapeOf(config: OutputConfig): string {
  return JSON.stringify([config.key, config.format, config.compression]);
}
