/**
 * WalGroupCommit on a real SQLite database in WAL mode: what one turn of the event loop shares, what a
 * failing write or a failing commit takes with it, and that nothing is acknowledged before the fsync of the
 * WAL that follows its commit. The fsync is held (fs.fsync replaced for this file's process) where a test
 * needs to see the moment between a commit and its fsync; everything else is SQLite and the disk.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import fs, { rmSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import path from 'node:path';
import { WalDatabase } from '../../src/sqlite/wal-database.js';
import { tempDir } from '../helpers/sluice.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rows (name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS parents (id INTEGER PRIMARY KEY);
-- checked at COMMIT, not at the write: a row without its parent makes the whole group's COMMIT fail
CREATE TABLE IF NOT EXISTS children (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED);
`;

/** A WalDatabase in a temporary directory, and a second connection that sees only what is committed. */
function open(t: TestContext) {
  const dir = tempDir('sluice-group-commit-');
  const wal = new WalDatabase(dir, 'test.sqlite', SCHEMA);
  wal.db.pragma('foreign_keys = ON');
  const reader = new Database(path.join(dir, 'test.sqlite'), { readonly: true, fileMustExist: true });
  t.after(() => {
    reader.close();
    wal.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const insert = wal.db.prepare('INSERT INTO rows (name) VALUES (?)');
  const committedRows = () => reader.prepare('SELECT name FROM rows ORDER BY rowid').pluck().all() as string[];
  return {
    wal,
    commits: wal.commits,
    insert: (name: string) => {
      insert.run(name);
    },
    committedRows,
    dir,
  };
}

/**
 * fsyncs of this process wait in `held` until the test lets each go (or fails it with an error); letGo()
 * (at the latest after the test) releases those waiting and lets later ones run at once.
 */
function holdFsyncs(t: TestContext) {
  const original = fs.fsync;
  const held: Array<(err?: NodeJS.ErrnoException) => void> = [];
  fs.fsync = ((fd: number, callback: (err: NodeJS.ErrnoException | null) => void) => {
    held.push((err) => (err ? callback(err) : original(fd, callback)));
  }) as typeof fs.fsync;
  syncBuiltinESMExports();
  const letGo = () => {
    fs.fsync = original;
    syncBuiltinESMExports();
    for (const release of held.splice(0)) release();
  };
  t.after(letGo);
  return { held, letGo };
}

/** Turns of the event loop until `done()`, at most 2 s. */
async function until(done: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 2000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`not within 2 s: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** Whether the promise has settled by now (after the callbacks already queued have run). */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  await new Promise((resolve) => setImmediate(resolve));
  return done;
}

test('writes queued in one turn share one transaction; a write of a later turn is in a transaction of its own', async (t) => {
  const { commits, insert, committedRows } = open(t);
  const seenBy: Record<string, string[]> = {};
  const a = commits.run(() => insert('a'));
  const b = commits.run(() => {
    seenBy.b = committedRows();
    insert('b');
  });
  await Promise.all([a, b]);
  assert.deepEqual(seenBy.b, [], 'a was not committed yet while b ran: they are one transaction');
  assert.deepEqual(committedRows(), ['a', 'b']);
  await commits.run(() => {
    seenBy.c = committedRows();
    insert('c');
  });
  assert.deepEqual(seenBy.c, ['a', 'b'], 'the next turn runs after the first transaction committed');
});

test('a write that throws is rolled back and rejected alone: the others of its transaction commit', async (t) => {
  const { commits, insert, committedRows } = open(t);
  const committed: string[] = [];
  const results = await Promise.allSettled([
    commits.run(
      () => {
        insert('a');
        return 'a';
      },
      () => committed.push('a'),
    ),
    commits.run(
      () => {
        insert('b');
        throw new Error('b fails');
      },
      () => committed.push('b'),
    ),
    commits.run(
      () => {
        insert('c');
        return 'c';
      },
      () => committed.push('c'),
    ),
  ]);
  assert.deepEqual(
    results.map((r) => r.status),
    ['fulfilled', 'rejected', 'fulfilled'],
  );
  assert.equal((results[0] as PromiseFulfilledResult<string>).value, 'a');
  assert.equal(((results[1] as PromiseRejectedResult).reason as Error).message, 'b fails');
  assert.deepEqual(committedRows(), ['a', 'c'], "b's row is rolled back with it, and only b's");
  assert.deepEqual(committed, ['a', 'c'], 'committed() runs for the writes that committed, not for the one that threw');
  assert.equal(commits.failed, undefined, "a write's own error does not make the database unwritable");
});

test('a write is acknowledged only after an fsync of the WAL that started after its commit', async (t) => {
  const { commits, insert, committedRows } = open(t);
  const { held } = holdFsyncs(t);
  let durable = 0;
  commits.onDurable(() => {
    durable++;
  });
  let aCommitted = false;
  const a = commits.run(
    () => insert('a'),
    () => {
      aCommitted = true;
    },
  );
  await until(() => held.length === 1, 'the fsync after the first commit');
  assert.ok(aCommitted, 'committed');
  assert.deepEqual(committedRows(), ['a'], 'visible to others');
  assert.equal(await settled(a), false, 'but not acknowledged while its fsync runs');
  assert.equal(durable, 0);

  // committed while that fsync runs: it may not cover b, so b waits for the next one
  const b = commits.run(() => insert('b'));
  await until(() => committedRows().length === 2, 'the second commit');
  assert.equal(held.length, 1, 'one fsync at a time');
  held.shift()!();
  await a;
  assert.equal(durable, 1);
  assert.equal(await settled(b), false, 'b is not acknowledged by the fsync that started before its commit');
  await until(() => held.length === 1, 'the next fsync, for b');
  held.shift()!();
  await b;
  assert.equal(durable, 2);
});

test('a failed fsync rejects every write it was to make durable; the next durable write makes the database writable again', async (t) => {
  const { wal, commits, insert } = open(t);
  const { held, letGo } = holdFsyncs(t);
  const a = commits.run(() => insert('a'));
  const b = commits.run(() => insert('b'));
  await until(() => held.length === 1, 'one fsync for both');
  const error = Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
  held.shift()!(error);
  await assert.rejects(a, (err) => err === error);
  await assert.rejects(b, (err) => err === error);
  assert.equal(commits.failed, error);
  assert.equal(wal.writable(), false);

  // real fsyncs from here (and the probe's, should its timer have fired meanwhile, let go too)
  letGo();
  await commits.run(() => insert('c'));
  assert.equal(commits.failed, undefined);
  assert.equal(wal.writable(), true);
});

test('a failed commit rejects every write of its transaction, and keeps none of them', async (t) => {
  const { wal, commits, insert, committedRows } = open(t);
  const committed: string[] = [];
  const results = await Promise.allSettled([
    commits.run(
      () => insert('a'),
      () => committed.push('a'),
    ),
    // fine when it runs, refused at COMMIT: no parent 99
    commits.run(
      () => {
        wal.db.prepare('INSERT INTO children (parent) VALUES (99)').run();
      },
      () => committed.push('child'),
    ),
    commits.run(
      () => insert('c'),
      () => committed.push('c'),
    ),
  ]);
  assert.deepEqual(
    results.map((r) => r.status),
    ['rejected', 'rejected', 'rejected'],
  );
  const reasons = results.map((r) => (r as PromiseRejectedResult).reason as { code?: string });
  assert.ok(
    reasons.every((r) => r === reasons[0]),
    'all with the error of the COMMIT',
  );
  assert.match(String(reasons[0]!.code), /^SQLITE_CONSTRAINT/);
  assert.deepEqual(committedRows(), [], 'rolled back, every write of it');
  assert.deepEqual(committed, [], 'committed() runs for none');
  assert.equal(wal.writable(), false, 'not writable until a commit is durable again');
  await commits.run(() => insert('d'));
  assert.deepEqual(committedRows(), ['d']);
  assert.equal(wal.writable(), true);
});

test('close while an fsync is running: the writes it covers are acknowledged, and the descriptor waits for it', async (t) => {
  const { wal, commits, insert, dir } = open(t);
  const { held, letGo } = holdFsyncs(t);
  const a = commits.run(() => insert('a'));
  await until(() => held.length === 1, 'the fsync of a to start');
  wal.close();
  // the fsync that was running ends after the close: it must neither fail nor fail a
  letGo();
  assert.equal(await a, undefined);
  const again = new Database(path.join(dir, 'test.sqlite'), { readonly: true });
  try {
    assert.deepEqual(again.prepare('SELECT name FROM rows').pluck().all(), ['a']);
  } finally {
    again.close();
  }
});

test('close commits what is queued and makes it durable before it returns', async (t) => {
  const { wal, commits, insert, dir } = open(t);
  const a = commits.run(() => insert('a'));
  wal.close();
  await a;
  await assert.rejects(
    commits.run(() => insert('b')),
    /closed/,
  );
  const again = new Database(path.join(dir, 'test.sqlite'), { readonly: true });
  try {
    assert.deepEqual(again.prepare('SELECT name FROM rows').pluck().all(), ['a']);
  } finally {
    again.close();
  }
});
