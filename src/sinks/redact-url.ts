/**
 * URLs as they may be shown: in /ready, /metrics, the console, `sluice check` and log lines. Receivers put
 * credentials in the userinfo, the path (webhook tokens) and the query (`?api_key=`), so only the scheme, host
 * and port are shown as they are; the query keeps its parameter names, which tell the operator which URL it is.
 */
const REDACTED = '[redacted]';

/** `https://user:pw@host:8443/in/tok?api_key=k#x` -> `https://host:8443/[redacted]?api_key=[redacted]`. */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return REDACTED;
  }
  const path = u.pathname === '' || u.pathname === '/' ? '' : `/${REDACTED}`;
  const query = [...u.searchParams.keys()].map((k) => `${encodeURIComponent(k)}=${REDACTED}`).join('&');
  return `${u.protocol}//${u.host}${path}${query ? `?${query}` : ''}`;
}

/** Every URL in a text (an error message) with its userinfo and query values redacted; paths stay, unknowable here. */
export function redactUrlsIn(text: string): string {
  return text.replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+/gi, (found) => {
    let u: URL;
    try {
      u = new URL(found);
    } catch {
      return found;
    }
    if (u.username === '' && u.password === '' && u.search === '') return found;
    const query = [...u.searchParams.keys()].map((k) => `${encodeURIComponent(k)}=${REDACTED}`).join('&');
    return `${u.protocol}//${u.host}${u.pathname}${query ? `?${query}` : ''}`;
  });
}

/**
 * The parts of a URL that may be secret, longest first, for scrubbing a text that may echo them (an error, a
 * receiver's answer): userinfo, the path and its segments, the query and its values. Parts shorter than 4
 * characters are left out: replacing them would mangle the text and they guard nothing.
 */
export function secretPartsOf(url: string): string[] {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return [url];
  }
  const parts = new Set<string>([url, u.href]);
  const add = (raw: string) => {
    for (const v of [raw, safeDecode(raw)]) if (v.length >= 4) parts.add(v);
  };
  add(u.username);
  add(u.password);
  if (u.pathname.length > 1) {
    add(u.pathname);
    for (const segment of u.pathname.split('/')) add(segment);
  }
  add(u.search);
  for (const [, value] of u.searchParams) {
    add(value);
    add(encodeURIComponent(value));
  }
  return [...parts].sort((a, b) => b.length - a.length);
}

/** `text` with the URL itself replaced by its shown form, and each other part by [redacted]. */
export function scrub(text: string, url: string, parts: string[] = secretPartsOf(url)): string {
  const urls = parts.filter((p) => p.includes('://'));
  const others = parts.filter((p) => !p.includes('://'));
  // the shown form goes in last, so that no part (a path segment that is also a host label) is replaced in it
  const pieces = urls.reduce((acc, u) => acc.flatMap((piece) => piece.split(u)), [text]);
  const scrubbed = pieces.map((piece) =>
    redactUrlsIn(others.reduce((acc, part) => acc.split(part).join(REDACTED), piece)),
  );
  return scrubbed.join(redactUrl(url));
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
