import { pino, type Logger } from 'pino';

/**
 * JSON logs on stderr (stdout is left to data: the console output writes decisions there). Credentials never
 * reach a log line: the fields that could hold them are censored wherever they appear.
 */
export function createLogger(level: string): Logger {
  return pino(
    {
      level,
      base: { service: 'sluice' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: [
          'req.headers.authorization',
          'headers.authorization',
          '*.headers.authorization',
          '*.secret_access_key',
          '*.access_key_id',
          '*.session_token',
          '*.tokens',
          '*.token',
          '*.credentials',
          '*.secret',
          '*.admin_key',
          '*.jwt_secret',
          '*.encryption_key',
          'config',
        ],
        censor: '[redacted]',
      },
    },
    pino.destination(2),
  );
}
