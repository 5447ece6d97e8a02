/** An error that becomes a JSON response `{status, message, data}` with its status code. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly data: Record<string, unknown> | string[] = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}
