/** The one bearer-token check (src/http/bearer-token.ts), behind a real Fastify route (inject: no socket). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { BearerTokens } from '../../src/http/bearer-token.js';
import { HttpError } from '../../src/http/http-error.js';

/** An app whose GET / answers what the request's token stands for, or the check's 401. */
async function appWith<T>(tokens: BearerTokens<T>) {
  const app = Fastify();
  app.setErrorHandler((err, _request, reply) => {
    if (!(err instanceof HttpError)) throw err;
    reply.code(err.statusCode).headers(err.headers).send({ message: err.message, data: err.data });
  });
  app.get('/', async (request) => ({ value: tokens.check(request, 'send a token') }));
  await app.ready();
  return app;
}

test('a configured token passes and answers what it stands for; the first of equal tokens wins', async () => {
  const app = await appWith(
    new BearerTokens([
      ['t-one', 'acme'],
      ['t-two', 'globex'],
      ['t-one', 'initech'],
    ]),
  );
  try {
    for (const [token, value] of [
      ['t-one', 'acme'],
      ['t-two', 'globex'],
    ]) {
      const res = await app.inject({ url: '/', headers: { authorization: `Bearer ${token}` } });
      assert.equal(res.statusCode, 200);
      assert.deepEqual(res.json(), { value });
    }
    // the scheme is case-insensitive, surrounding spaces are not part of the token
    const res = await app.inject({ url: '/', headers: { authorization: 'bearer   t-two  ' } });
    assert.deepEqual(res.json(), { value: 'globex' });
  } finally {
    await app.close();
  }
});

test('no token and a wrong token are 401s with the Bearer challenge, each with its own message', async () => {
  const app = await appWith(BearerTokens.of(['secret']));
  try {
    const missing = await app.inject({ url: '/' });
    assert.equal(missing.statusCode, 401);
    assert.equal(missing.headers['www-authenticate'], 'Bearer');
    assert.deepEqual(missing.json(), { message: 'send a token', data: { reason: 'unauthorized' } });
    const notAccepted = 'the bearer token is not accepted';
    // not a bearer token at all is as good as none
    for (const [authorization, message] of [
      ['Bearer secret2', notAccepted],
      ['Bearer secre', notAccepted],
      ['Basic secret', 'send a token'],
      ['secret', 'send a token'],
      ['Bearer ', 'send a token'],
    ]) {
      const res = await app.inject({ url: '/', headers: { authorization } });
      assert.equal(res.statusCode, 401, authorization);
      assert.equal(res.headers['www-authenticate'], 'Bearer');
      assert.equal(res.json().message, message, authorization);
    }
  } finally {
    await app.close();
  }
});

test('find: no token, or none configured, finds nothing', () => {
  assert.equal(BearerTokens.of(['x']).find(undefined), undefined);
  assert.equal(BearerTokens.of([]).find('x'), undefined);
  assert.equal(BearerTokens.of([]).size, 0);
  assert.equal(BearerTokens.of(['x']).find('x'), true);
});
