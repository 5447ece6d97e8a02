/**
 * A key template process of the KeyTemplatePool (forked with a small heap): evaluates key templates, one at a
 * time, for the process that forked it. It says when it starts each (the time limit counts from then). A template
 * that runs too long is killed with this process; one that exhausts its heap ends it (V8 aborts): either way
 * the Sluice process is untouched, and it forks another. It exits when that process goes away.
 */
import { KeyTemplateError, templatedObjectKey, type KeyTemplateTask } from './key-template.js';

/** What the pool sends: one evaluation. */
export interface KeyTemplateRequest {
  id: number;
  task: KeyTemplateTask;
}

export type KeyTemplateOutcome = { ok: true; key: string } | { ok: false; template: boolean; message: string };

/** What this process sends: that it is ready, that it started an evaluation, an evaluation's outcome. */
export type KeyTemplateReply = { ready: true } | { started: number } | { id: number; outcome: KeyTemplateOutcome };

function send(reply: KeyTemplateReply): void {
  process.send?.(reply);
}

function evaluate(task: KeyTemplateTask): KeyTemplateOutcome {
  try {
    return { ok: true, key: templatedObjectKey(task) };
  } catch (err) {
    if (err instanceof KeyTemplateError) return { ok: false, template: true, message: err.message };
    // not the template's own failure (the stored data did not parse): worth another attempt
    return {
      ok: false,
      template: false,
      message: `the key could not be computed: ${String((err as Error)?.message).slice(0, 1000)}`,
    };
  }
}

if (process.send) {
  process.on('disconnect', () => process.exit(0));
  process.on('message', (message: KeyTemplateRequest) => {
    send({ started: message.id });
    send({ id: message.id, outcome: evaluate(message.task) });
  });
  send({ ready: true });
}
