import net from 'node:net';

/**
 * What is wrong with an S3 bucket name (a validation message ending), or undefined. AWS's rules for general
 * purpose buckets: a tenant's bucket becomes a path segment (path-style) or a host name label
 * (virtual-hosted), so anything else (`..`, `a/b`, `Internal_API`) could steer a request elsewhere.
 */
export function bucketNameProblem(bucket: string): string | undefined {
  if (bucket.length < 3 || bucket.length > 63) return 'failed length validation: 3 to 63 characters';
  if (!/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/.test(bucket)) {
    return 'failed pattern validation: lowercase letters, digits, dots and hyphens, beginning and ending with a letter or digit';
  }
  if (bucket.includes('..') || bucket.includes('.-') || bucket.includes('-.'))
    return 'failed pattern validation: no dot next to a dot or a hyphen';
  if (net.isIPv4(bucket)) return 'failed pattern validation: not an IP address';
  if (RESERVED_PREFIXES.some((p) => bucket.startsWith(p)) || RESERVED_SUFFIXES.some((s) => bucket.endsWith(s))) {
    return 'failed pattern validation: a prefix or suffix S3 reserves';
  }
  return undefined;
}

const RESERVED_PREFIXES = ['xn--', 'sthree-', 'amzn-s3-demo-'];
const RESERVED_SUFFIXES = ['-s3alias', '--ol-s3', '.mrap', '--x-s3', '--table-s3'];
