import { BlockList, isIP } from 'node:net';
import { hostname, networkInterfaces } from 'node:os';
import type { FastifyRequest } from 'fastify';
import { HttpError } from './http-error.js';

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** True for addresses only this machine can reach: 127.0.0.0/8, ::1 (IPv4-mapped too), and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .replace(/^\[(.*)\]$/, '$1')
    .replace(/\.$/, '')
    .toLowerCase();
  // names under .localhost are reserved for loopback (RFC 6761): no one can point them elsewhere
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  const family = isIP(h);
  return family !== 0 && LOOPBACK.check(h, family === 6 ? 'ipv6' : 'ipv4');
}

/** The wildcard addresses a server can listen on: every interface. */
function isWildcard(host: string): boolean {
  return host === '' || host === '0.0.0.0' || host === '::' || host === '[::]';
}

/** The host name of a Host header, lowercased, without port, brackets or a trailing dot. */
export function hostOf(header: string): string {
  const h = header.trim().toLowerCase();
  const bracketed = /^\[([^\]]*)\](:\d*)?$/.exec(h);
  if (bracketed) return bracketed[1]!;
  // a bare IPv6 address has more than one colon and no port
  const name = (h.match(/:/g) ?? []).length > 1 ? h : h.replace(/:\d*$/, '');
  return name.replace(/\.$/, '');
}

/**
 * Which Host names the API and console answer to, against DNS rebinding: a page on evil.example whose name
 * is made to resolve to 127.0.0.1 sends `Host: evil.example`, which none of these is. A loopback listen takes
 * loopback names only; another address, that address; a wildcard listen, this machine's own addresses and
 * host name; and always `http.allowed_hosts` (`*.example.com` for subdomains, `*` for any). The port is not
 * compared: an SSH tunnel or a port mapping changes it, and the name is what rebinding cannot fake.
 */
export class HostPolicy {
  private readonly exact = new Set<string>();
  private readonly suffixes: string[] = [];
  private readonly any: boolean;
  private readonly loopback: boolean;

  constructor(listenHost: string, allowedHosts: string[]) {
    const listen = listenHost.replace(/^\[(.*)\]$/, '$1').toLowerCase();
    this.loopback = isLoopbackHost(listen);
    this.any = allowedHosts.includes('*');
    for (const entry of allowedHosts) {
      const h = entry
        .replace(/^\[(.*)\]$/, '$1')
        .replace(/\.$/, '')
        .toLowerCase();
      if (h.startsWith('*.')) this.suffixes.push(h.slice(1));
      else if (h !== '*') this.exact.add(h);
    }
    if (isWildcard(listen)) {
      this.exact.add(hostname().toLowerCase());
      for (const addresses of Object.values(networkInterfaces()))
        for (const a of addresses ?? []) this.exact.add(a.address.toLowerCase());
    } else if (!this.loopback) {
      this.exact.add(listen);
    }
  }

  /** True when the API is only reachable from this machine: OPA's Host is then a loopback name too. */
  get loopbackOnly(): boolean {
    return this.loopback;
  }

  allows(host: string): boolean {
    if (this.any || isLoopbackHost(host) || this.exact.has(host)) return true;
    return this.suffixes.some((s) => host.endsWith(s) && host.length > s.length);
  }
}

/** Paths that probes and Prometheus reach by whatever name they were given; they hold no secrets. */
const PROBES = new Set(['/health', '/ready', '/metrics']);

/**
 * An onRequest hook that refuses (421) a request whose Host the policy does not allow. `/health`, `/ready` and
 * `/metrics` are not checked. `/logs` is checked on a loopback listen only: elsewhere OPA sends the Host of its
 * service URL, which can be any name (a Kubernetes service, a compose service), and a refusal would stop ingest
 * (OPA keeps retrying a refused chunk and loses it when it stops); a rebound page could only post decisions,
 * which ingest.tokens prevents.
 */
export function hostCheck(policy: HostPolicy) {
  return async (request: FastifyRequest): Promise<void> => {
    const header = request.headers.host;
    // HTTP/1.0 without Host: no browser sends that, and so no rebinding
    if (header === undefined || header === '') return;
    const path = request.url.replace(/[?#].*$/, '').replace(/\/+$/, '') || '/';
    if (PROBES.has(path)) return;
    if (!policy.loopbackOnly && (path === '/logs' || path.startsWith('/logs/'))) return;
    const host = hostOf(header);
    if (policy.allows(host)) return;
    throw new HttpError(
      421,
      `Host ${JSON.stringify(header.slice(0, 200))} is not a name this server answers to (a guard against DNS rebinding): ` +
        'add it to http.allowed_hosts',
      { reason: 'host_not_allowed' },
    );
  };
}
