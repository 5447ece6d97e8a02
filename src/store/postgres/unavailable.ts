/**
 * Errors that say PostgreSQL cannot be reached or cannot take work right now, rather than that a statement is
 * wrong: the connection refused, dropped or timed out, the server shutting down or out of connections, a
 * deadlock or serialization failure that outlived the store's own retries. The same write succeeds once the
 * database is back, so they mean "retry later" (503), never a bug (500).
 */
const SQLSTATES = /^(08...|57P0[123]|53300|53400|40001|40P01)$/;
/** What Node's sockets fail with on the way to the database. */
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);
/** pg's own words for a connection that ended or never came, which carry no code. */
const CLIENT_MESSAGES =
  /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i;

/** The error's code (`08006`, `ECONNREFUSED`, or `connection` for pg's uncoded ones) when it is one of those. */
export function postgresUnavailableCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && (SQLSTATES.test(code) || SOCKET_CODES.has(code))) return code;
  const message = (err as { message?: unknown } | null)?.message;
  if (typeof code !== 'string' && typeof message === 'string' && CLIENT_MESSAGES.test(message)) return 'connection';
  return undefined;
}
