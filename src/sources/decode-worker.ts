/**
 * Runs in a worker thread: gunzip, UTF-8 and JSON validation, and the split into chunks per hour, off the
 * event loop. Errors travel back as plain data (class instances do not cross threads).
 */
import { decisionsToChunks, decodeBody, type DecodedRequest } from './opa-decode.js';
import { Piscina } from 'piscina';
import { HttpError } from '../http/http-error.js';

export interface DecodeTask {
  body: Uint8Array;
  contentEncoding: string | undefined;
  partition: string;
  receivedAt: number;
  maxDecodedBytes: number;
  maxDecisions: number;
  /** buffer.compression_level */
  compressionLevel: number;
  /** Return each decision's decision_id and timestamp too (decisions that become a tenant's events). */
  eventFields: boolean;
}

export type DecodeOutcome =
  | ({ ok: true } & DecodedRequest)
  | { ok: false; statusCode: number; message: string; data: HttpError['data'] };

export default async function decode(task: DecodeTask): Promise<DecodeOutcome> {
  try {
    const body = Buffer.from(task.body.buffer, task.body.byteOffset, task.body.byteLength);
    const json = await decodeBody(body, task.contentEncoding, { maxDecodedBytes: task.maxDecodedBytes });
    const decoded = decisionsToChunks(json, task.partition, task.receivedAt, {
      maxDecisions: task.maxDecisions,
      eventFields: task.eventFields,
      compressionLevel: task.compressionLevel,
    });
    // the payloads move to the event loop without a copy (each owns its ArrayBuffer: see toChunk)
    const outcome: DecodeOutcome = { ok: true, ...decoded };
    const transfer = decoded.chunks.flatMap((c) => (c.text ? [c.payload.buffer, c.text.buffer] : [c.payload.buffer]));
    const movable = { [Piscina.transferableSymbol]: transfer, [Piscina.valueSymbol]: outcome };
    return Piscina.move(movable as unknown as Parameters<typeof Piscina.move>[0]) as unknown as DecodeOutcome;
  } catch (err) {
    if (err instanceof HttpError)
      return { ok: false, statusCode: err.statusCode, message: err.message, data: err.data };
    return {
      ok: false,
      statusCode: 400,
      message: `cannot decode the body: ${(err as Error).message}`,
      data: { reason: 'undecodable' },
    };
  }
}
