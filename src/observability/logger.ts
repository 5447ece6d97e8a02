import { pino, type Logger } from 'pino';

/** JSON logs on stdout. Credentials never reach a log line: the fields that could hold them are censored. */
export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: 'sluice' },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: ['req.headers.authorization', '*.secret_access_key', '*.access_key_id', '*.session_token', '*.tokens', 'config'],
      censor: '[redacted]',
    },
  });
}
