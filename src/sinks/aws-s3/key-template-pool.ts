import { fork, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { KeyTemplateError, type KeyTemplateTask } from './key-template.js';
import type { KeyTemplateOutcome, KeyTemplateRequest } from './key-template-child.js';

export interface KeyTemplateLimits {
  /** Key template processes (evaluations at the same time). */
  processes: number;
  /** How long one evaluation may run, from when its process starts it. */
  timeMs: number;
  /** How long an evaluation may wait for a process (behind others) before it fails; that failure is retried. */
  queueMs: number;
  /** The V8 heap of a process (--max-old-space-size): the event's parsed data and all the template makes of it. */
  maxOldSpaceMb: number;
  /** --max-semi-space-size of a process. */
  maxSemiSpaceMb: number;
  /** A process idle this long ends (the next evaluation forks another). */
  idleMs: number;
}

export const KEY_TEMPLATE_LIMITS: KeyTemplateLimits = {
  processes: Math.max(1, Math.min(2, availableParallelism())),
  timeMs: 1000,
  queueMs: 30_000,
  maxOldSpaceMb: 64,
  maxSemiSpaceMb: 8,
  idleMs: 60_000,
};

/** When the process never says it started an evaluation, it is stopped this long after the evaluation was sent. */
const UNSTARTED_GRACE_MS = 5000;
/** A process not ready this long after it was forked is killed (and forking again waits). */
const START_TIMEOUT_MS = 15_000;
/** Forking again after processes that ended before they were ready waits up to this long. */
const MAX_FORK_BACKOFF_MS = 10_000;
/** What is kept of a process's stderr: V8 writes why it aborts ("heap out of memory") first, then a long stack. */
const STDERR_HEAD_CHARS = 8192;

const CHILD = fileURLToPath(new URL('./key-template-child.js', import.meta.url));

interface Job {
  id: number;
  task: KeyTemplateTask;
  resolve: (key: string) => void;
  reject: (err: Error) => void;
  queueTimer: NodeJS.Timeout;
}

interface Child {
  proc: ChildProcess;
  ready: boolean;
  gone: boolean;
  job: Job | undefined;
  /** Its start timeout until it is ready; then the evaluation's time limit while it has one, else the idle timeout. */
  timer: NodeJS.Timeout | undefined;
  stderr: string;
}

/**
 * Evaluates key templates off the event loop, each under a time and memory budget. A JMESPath expression's
 * work is not bounded by its length: every `| [@, @][]` doubles it, so a 250-character template keeps a
 * thread busy for seconds or exhausts any heap. Each evaluation runs in a separate process (forked with a
 * small heap): one past the time limit is killed, one that exhausts its heap dies alone; the evaluation fails
 * with a KeyTemplateError (the template's fault: not retried), and another process takes the next one.
 *
 * Processes, not worker threads: a worker's resourceLimits are ignored when Node runs with
 * --max-old-space-size (NODE_OPTIONS; nodejs/node#43991), and a large allocation at a worker's heap limit
 * aborts the whole process, not the worker (nodejs/node#47224): both would let a template take Sluice down.
 */
export class KeyTemplatePool {
  private readonly queue: Job[] = [];
  private readonly children = new Set<Child>();
  private nextId = 1;
  private closed = false;
  /** Processes that ended before they were ready, in a row. */
  private failedForks = 0;
  private forkTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly log: Logger,
    private readonly limits: KeyTemplateLimits = KEY_TEMPLATE_LIMITS,
  ) {}

  /**
   * The key the template gives for the event. Rejects with a KeyTemplateError when the template gives none,
   * runs longer than the time limit or uses more memory than allowed; with another Error when it could not be
   * evaluated for another reason (it waited too long for a process, its process ended otherwise): that one is
   * worth trying again.
   */
  evaluate(task: KeyTemplateTask): Promise<string> {
    if (this.closed) return Promise.reject(new Error('the key_template processes are closed (Sluice is stopping)'));
    return new Promise<string>((resolve, reject) => {
      const job: Job = {
        id: this.nextId++,
        task,
        resolve,
        reject,
        queueTimer: setTimeout(() => {
          const at = this.queue.indexOf(job);
          if (at === -1) return;
          this.queue.splice(at, 1);
          reject(
            new Error(
              `the key_template waited more than ${seconds(this.limits.queueMs)} for a process to evaluate it (others were busy)`,
            ),
          );
        }, this.limits.queueMs),
      };
      job.queueTimer.unref();
      this.queue.push(job);
      this.dispatch();
    });
  }

  /** Ends every process; evaluations queued or running are rejected. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.forkTimer);
    for (const job of this.queue.splice(0)) {
      clearTimeout(job.queueTimer);
      job.reject(new Error('the key_template processes are closed (Sluice is stopping)'));
    }
    for (const child of [...this.children])
      this.end(child, new Error('the key_template processes are closed (Sluice is stopping)'));
  }

  /** Hands queued evaluations to idle processes, and forks processes for the rest (up to `processes`). */
  private dispatch(): void {
    if (this.closed) return;
    let starting = 0;
    for (const child of this.children) {
      if (!child.ready) starting++;
      else if (!child.job && this.queue.length > 0) this.run(child, this.queue.shift()!);
    }
    if (this.forkTimer) return;
    for (
      let waiting = this.queue.length - starting;
      waiting > 0 && this.children.size < this.limits.processes;
      waiting--
    )
      this.fork();
  }

  private fork(): void {
    // only the limits: not the parent's flags (an --inspect port), nor NODE_OPTIONS (which could raise the heap)
    const { NODE_OPTIONS: _ignored, ...env } = process.env;
    let proc: ChildProcess;
    try {
      proc = fork(CHILD, [], {
        execArgv: [
          `--max-old-space-size=${this.limits.maxOldSpaceMb}`,
          `--max-semi-space-size=${this.limits.maxSemiSpaceMb}`,
        ],
        env,
        stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
        serialization: 'json',
      });
    } catch (err) {
      this.forkFailed(err as Error);
      return;
    }
    const child: Child = { proc, ready: false, gone: false, job: undefined, timer: undefined, stderr: '' };
    this.children.add(child);
    child.timer = setTimeout(() => {
      this.end(child, new Error('not ready'));
      this.forkFailed(new Error(`a key_template process was not ready within ${seconds(START_TIMEOUT_MS)}`));
    }, START_TIMEOUT_MS);
    child.timer.unref();
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (text: string) => {
      if (child.stderr.length < STDERR_HEAD_CHARS) child.stderr = (child.stderr + text).slice(0, STDERR_HEAD_CHARS);
    });
    proc.on('message', (message: unknown) => this.onMessage(child, message));
    // 'close' comes after the process exited and its stderr was read to the end (where V8 says it ran out of memory)
    proc.on('close', (code: number | null, signal: NodeJS.Signals | null) =>
      this.onEnd(child, `${signal ?? `exit code ${code}`}`),
    );
    proc.on('error', (err: Error) => this.onEnd(child, err.message));
    // they never keep Sluice running: close() ends them, and each ends itself when Sluice goes away
    proc.unref();
    proc.channel?.unref();
    (proc.stderr as { unref?: () => void } | null)?.unref?.();
  }

  private onMessage(child: Child, message: unknown): void {
    if (child.gone || typeof message !== 'object' || message === null) return;
    const m = message as { ready?: unknown; started?: unknown; id?: unknown; outcome?: KeyTemplateOutcome };
    if (m.ready === true) {
      child.ready = true;
      this.failedForks = 0;
      this.idle(child);
      this.dispatch();
    } else if (typeof m.started === 'number' && child.job?.id === m.started) {
      // the time limit counts from here: not the wait for a process, nor the transfer of the event
      clearTimeout(child.timer);
      child.timer = setTimeout(() => this.timedOut(child), this.limits.timeMs);
      child.timer.unref();
    } else if (typeof m.id === 'number' && child.job?.id === m.id && m.outcome) {
      const job = child.job;
      const outcome = m.outcome;
      child.job = undefined;
      this.idle(child);
      if (outcome.ok) job.resolve(outcome.key);
      else job.reject(outcome.template ? new KeyTemplateError(outcome.message) : new Error(outcome.message));
      this.dispatch();
    }
  }

  private run(child: Child, job: Job): void {
    clearTimeout(job.queueTimer);
    clearTimeout(child.timer);
    child.job = job;
    child.timer = setTimeout(() => this.timedOut(child), this.limits.timeMs + UNSTARTED_GRACE_MS);
    child.timer.unref();
    const request: KeyTemplateRequest = { id: job.id, task: job.task };
    child.proc.send(request, (err) => {
      if (err) this.onEnd(child, `the evaluation could not be sent: ${err.message}`);
    });
  }

  private timedOut(child: Child): void {
    this.end(
      child,
      new KeyTemplateError(
        `key_template took longer than ${seconds(this.limits.timeMs)} on this event; it was stopped`,
      ),
    );
    this.dispatch();
  }

  /** A process that ended (or failed) on its own. */
  private onEnd(child: Child, how: string): void {
    if (child.gone) return;
    const outOfMemory = /heap out of memory|allocation failed|invalid size error/i.test(child.stderr);
    if (child.job)
      this.log.debug({ how, stderr: child.stderr.slice(0, 1000) }, 'a key_template process ended while evaluating');
    this.end(
      child,
      outOfMemory
        ? new KeyTemplateError(
            `key_template used more memory than allowed (${this.limits.maxOldSpaceMb} MiB) on this event; it was stopped`,
          )
        : new Error(`the key_template process ended (${how}) while it evaluated this event`),
    );
    if (!child.ready) this.forkFailed(new Error(how));
    else this.dispatch();
  }

  /** Takes the process out of the pool and kills it; its evaluation, if any, is rejected with `err`. */
  private end(child: Child, err: Error): void {
    if (child.gone) return;
    child.gone = true;
    clearTimeout(child.timer);
    this.children.delete(child);
    const job = child.job;
    child.job = undefined;
    if (job) job.reject(err);
    if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL');
  }

  /** A process is ended after idleMs without an evaluation. */
  private idle(child: Child): void {
    clearTimeout(child.timer);
    child.timer = setTimeout(() => {
      if (!child.job) this.end(child, new Error('idle'));
    }, this.limits.idleMs);
    child.timer.unref();
  }

  /** Forking failed (or the process ended before it was ready): the next fork waits, longer each time in a row. */
  private forkFailed(err: Error): void {
    this.failedForks++;
    const wait = Math.min(MAX_FORK_BACKOFF_MS, 250 * 2 ** Math.min(this.failedForks, 10));
    this.log.warn({ err, retry_in_ms: wait }, 'a key_template process could not be started; trying again shortly');
    if (this.closed || this.forkTimer) return;
    this.forkTimer = setTimeout(() => {
      this.forkTimer = undefined;
      this.dispatch();
    }, wait);
    this.forkTimer.unref();
  }
}

function seconds(ms: number): string {
  return `${ms / 1000} s`;
}
