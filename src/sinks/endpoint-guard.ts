import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import ipaddr from 'ipaddr.js';
import { z } from 'zod';

/**
 * Where tenant destinations may connect.
 *
 * A tenant chooses its destination's endpoint, so without a check Sluice would send signed PUTs, with a
 * tenant-chosen path, headers and body, to whatever the tenant names (the cloud metadata service, a database
 * on loopback, anything on the private network) and show the answer back in the delivery log. So by default
 * a destination may reach only global unicast addresses; the operator opens more with
 * `api.destinations.allowed_endpoints`.
 *
 * Two checks, because a check made when a destination is saved proves nothing about where a later connection
 * goes (DNS answers change: rebinding; a stored destination predates a config change):
 * - when saved (`endpointProblem`): http/https only, no user info, IP literals in dotted decimal and allowed,
 *   names that are local by convention (`localhost`, single labels, `.internal`...) only if listed;
 * - when connecting (`agents()`): every address a connection would go to, after DNS, is checked again.
 *
 * Matching rules of the allow-list: a CIDR (or a single IP address) opens those addresses to every
 * destination, whatever name leads there; a host name only lets an endpoint be written with that exact name
 * (case-insensitive, trailing dot ignored, no wildcards, any port) and opens no address: what it resolves to
 * is checked like any other address. So a listed name cannot be turned, by its DNS answers, into a way to
 * reach addresses nobody listed.
 */
export class EndpointGuard {
  private readonly names = new Set<string>();
  private readonly ranges: Array<[ipaddr.IPv4 | ipaddr.IPv6, number]> = [];

  constructor(allowed: readonly string[] = []) {
    for (const raw of allowed) {
      const entry = parseAllowEntry(raw);
      if (entry === undefined)
        throw new Error(`api.destinations.allowed_endpoints: ${JSON.stringify(raw)} ${ALLOW_ENTRY_MESSAGE}`);
      if (typeof entry === 'string') this.names.add(entry);
      else this.ranges.push(entry);
    }
  }

  /**
   * Why a destination may not connect to this address (a phrase such as "a loopback address"), or undefined
   * when it may. An unparsable address is refused.
   */
  addressRefusal(address: string): string | undefined {
    let parsed: ipaddr.IPv4 | ipaddr.IPv6;
    try {
      parsed = ipaddr.parse(address);
    } catch {
      return 'not an IP address';
    }
    // Listed ranges match only addresses of their own family: an IPv4-mapped IPv6 form of a listed IPv4
    // address is not the listed address (it is refused below unless an IPv6 range names it).
    if (this.ranges.some(([range, bits]) => range.kind() === parsed.kind() && parsed.match(range, bits)))
      return undefined;
    const range = parsed.range();
    if (range !== 'unicast') return RANGE_PHRASES[range] ?? `a special-purpose address (${range})`;
    // ipaddr.js calls "unicast" whatever is in none of its special ranges; in IPv6 only 2000::/3 is allocated
    // as global unicast (the rest includes the deprecated IPv4-compatible ::a.b.c.d forms).
    if (parsed.kind() === 'ipv6' && !parsed.match(GLOBAL_UNICAST_V6)) return 'not a global unicast address';
    return undefined;
  }

  /**
   * What is wrong with an endpoint URL for a tenant destination, as the end of a validation message
   * ("failed scheme validation: ...", "is not allowed: ..."), or undefined when it may be saved.
   */
  endpointProblem(endpoint: string): string | undefined {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      return 'failed pattern validation';
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      return 'failed scheme validation: only http and https endpoints are allowed';
    if (url.username || url.password) return 'is not allowed: an endpoint must not hold a user name or password';
    const host = url.hostname;
    if (host === '') return 'is not allowed: it names no host';
    const listHint = 'api.destinations.allowed_endpoints opens it';
    if (host.startsWith('[')) {
      const address = host.slice(1, -1);
      const refusal = this.addressRefusal(address);
      return refusal
        ? `is not allowed: ${address} is ${refusal}; destinations may reach only public addresses unless ${listHint}`
        : undefined;
    }
    if (net.isIPv4(host)) {
      // The URL parser reads 2130706433, 0x7f.1 and 0177.0.0.1 as 127.0.0.1: refuse any spelling but the
      // plain one, so that what an operator reads in a destination is where it goes.
      const written = /^[a-z][a-z0-9+.-]*:\/\/([^/?#:]*)/i.exec(endpoint)?.[1];
      if (written !== host) return `is not allowed: write the IP address in dotted decimal (${host})`;
      const refusal = this.addressRefusal(host);
      return refusal
        ? `is not allowed: ${host} is ${refusal}; destinations may reach only public addresses unless ${listHint}`
        : undefined;
    }
    const name = host.replace(/\.+$/, '');
    if (this.names.has(name)) return undefined;
    if (isLocalName(name))
      return `is not allowed: ${name} is a local host name; destinations may reach only public hosts unless ${listHint}`;
    // A public-looking name: where it leads is checked on every connection.
    return undefined;
  }

  /**
   * A dns.lookup for sockets: resolves as usual, keeps only the addresses a destination may reach, and fails
   * with code `endpoint_not_allowed` when none is left. Node calls it for host names only; IP literals are
   * checked by the agents' createConnection.
   */
  readonly lookup: net.LookupFunction = (hostname, options, callback) => {
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) {
        callback(err, '', 0);
        return;
      }
      const allowed = addresses.filter((a) => this.addressRefusal(a.address) === undefined);
      const first = allowed[0];
      if (first === undefined) {
        // The addresses are not named: the message reaches the tenant, who should not learn what internal
        // names resolve to.
        callback(
          notAllowed(
            `${hostname} resolves only to addresses destinations may not reach (api.destinations.allowed_endpoints opens them)`,
          ),
          '',
          0,
        );
        return;
      }
      if (options.all) callback(null, allowed);
      else callback(null, first.address, first.family);
    });
  };

  /** Why a connection to this host (as a socket gets it: a name or an IP literal) is refused before DNS, or undefined. */
  connectRefusal(host: string | null | undefined): NodeJS.ErrnoException | undefined {
    const h = (host || 'localhost').replace(/^\[(.*)\]$/, '$1');
    if (net.isIP(h) === 0) return undefined; // a name: the lookup checks what it resolves to
    return this.addressRefusal(h) === undefined
      ? undefined
      : notAllowed(`${h} is an address destinations may not reach (api.destinations.allowed_endpoints opens it)`);
  }

  /**
   * HTTP and HTTPS agents for an S3 client whose every connection is checked: names through `lookup`, IP
   * literals (which Node connects to without a lookup) in createConnection. Redirects are not followed by
   * the SDK, and any new connection goes through these agents, so no answer can lead elsewhere.
   */
  agents(): { httpAgent: http.Agent; httpsAgent: https.Agent } {
    // keepAlive and maxSockets as the SDK sets them on the agents it makes itself.
    const options = { keepAlive: true, maxSockets: 50, lookup: this.lookup };
    return { httpAgent: new GuardedHttpAgent(this, options), httpsAgent: new GuardedHttpsAgent(this, options) };
  }
}

class GuardedHttpAgent extends http.Agent {
  constructor(
    private readonly guard: EndpointGuard,
    options: http.AgentOptions,
  ) {
    super(options);
  }

  override createConnection(
    options: http.ClientRequestArgs,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    return guardedConnection(this.guard, options, callback, () => super.createConnection(options, callback));
  }
}

class GuardedHttpsAgent extends https.Agent {
  constructor(
    private readonly guard: EndpointGuard,
    options: https.AgentOptions,
  ) {
    super(options);
  }

  override createConnection(
    options: https.RequestOptions,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    return guardedConnection(this.guard, options, callback, () => super.createConnection(options, callback));
  }
}

function guardedConnection(
  guard: EndpointGuard,
  options: http.ClientRequestArgs,
  callback: ((err: Error | null, stream: Duplex) => void) | undefined,
  connect: () => Duplex | null | undefined,
): Duplex | null | undefined {
  const refusal = options.socketPath
    ? notAllowed('a destination may not connect to a local socket')
    : guard.connectRefusal(options.host ?? options.hostname);
  if (!refusal) return connect();
  // The agent hands a callback error to the request, which fails with it; no socket is ever opened.
  process.nextTick(() => callback?.(refusal, undefined as unknown as Duplex));
  return undefined;
}

function notAllowed(message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code: ENDPOINT_NOT_ALLOWED });
}

/** The code of a connection Sluice refused to open. */
export const ENDPOINT_NOT_ALLOWED = 'endpoint_not_allowed';

const GLOBAL_UNICAST_V6 = ipaddr.parseCIDR('2000::/3');

const RANGE_PHRASES: Record<string, string> = {
  unspecified: 'an unspecified address (0.0.0.0/8 or ::)',
  broadcast: 'the broadcast address',
  multicast: 'a multicast address',
  linkLocal: 'a link-local address (169.254.0.0/16, fe80::/10: cloud metadata services live there)',
  loopback: 'a loopback address',
  carrierGradeNat: 'a carrier-grade NAT address (100.64.0.0/10)',
  private: 'a private address (RFC 1918)',
  reserved: 'a reserved address',
  uniqueLocal: 'a unique local address (fc00::/7)',
  ipv4Mapped: 'an IPv4-mapped IPv6 address',
  rfc6145: 'an IPv4-translated IPv6 address',
  rfc6052: 'a NAT64 address (64:ff9b::/96)',
  '6to4': 'a 6to4 address (2002::/16)',
  teredo: 'a Teredo address (2001::/32)',
};

/** Suffixes of names that are local by standard (RFC 6761, 6762, 8375, ICANN's .internal) or by wide habit. */
const LOCAL_SUFFIXES = [
  'localhost',
  'local',
  'localdomain',
  'internal',
  'home.arpa',
  'lan',
  'home',
  'corp',
  'intranet',
];

function isLocalName(name: string): boolean {
  if (!name.includes('.')) return true; // single labels resolve through search domains: the local network
  return LOCAL_SUFFIXES.some((s) => name === s || name.endsWith(`.${s}`));
}

const HOST_NAME =
  /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/** One allow-list entry: a host name (lowercase, no trailing dot), or an address range; undefined if neither. */
function parseAllowEntry(raw: string): string | [ipaddr.IPv4 | ipaddr.IPv6, number] | undefined {
  const entry = raw.trim();
  try {
    if (entry.includes('/')) {
      // Dotted decimal only, as for endpoints: "10/8" is not obviously 10.0.0.0/8 to a reader.
      if (ipaddr.IPv4.isValidCIDRFourPartDecimal(entry) || (entry.includes(':') && ipaddr.IPv6.isValidCIDR(entry)))
        return ipaddr.parseCIDR(entry);
      return undefined;
    }
    if (ipaddr.IPv4.isValidFourPartDecimal(entry)) return [ipaddr.IPv4.parse(entry), 32];
    if (entry.includes(':') && ipaddr.IPv6.isValid(entry)) return [ipaddr.IPv6.parse(entry), 128];
  } catch {
    return undefined;
  }
  const name = entry.toLowerCase().replace(/\.$/, '');
  if (!HOST_NAME.test(name)) return undefined;
  // "2130706433" or "0x7f.1" would be read by the URL parser as an IPv4 address, never matched as a name.
  return net.isIPv4(new URL(`http://${name}/`).hostname) ? undefined : name;
}

const ALLOW_ENTRY_MESSAGE =
  'must be a CIDR (10.0.0.0/8, fd00::/8), an IP address (127.0.0.1, ::1) or a host name (minio.example.com)';

/** An `api.destinations.allowed_endpoints` entry, for the config schema. */
export const allowedEndpoint = z.string().refine((v) => parseAllowEntry(v) !== undefined, ALLOW_ENTRY_MESSAGE);
