import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import type { StringMap } from './types.js';

const VERSION = 'v1';

/**
 * Encrypts destination credentials at rest with AES-256-GCM. Any secret string works as the key: it is
 * stretched to 256 bits with HKDF-SHA256. Each value has its own random IV; the auth tag detects tampering
 * and a wrong key alike.
 */
export class CredentialsCipher {
  private readonly key: Buffer;

  constructor(secret: string) {
    this.key = Buffer.from(hkdfSync('sha256', secret, 'sluice', 'destination credentials', 32));
  }

  encrypt(credentials: StringMap): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const sealed = Buffer.concat([cipher.update(JSON.stringify(credentials), 'utf8'), cipher.final()]);
    return `${VERSION}:${Buffer.concat([iv, cipher.getAuthTag(), sealed]).toString('base64')}`;
  }

  decrypt(text: string): StringMap {
    const [version, payload] = text.split(':');
    if (version !== VERSION || !payload) throw new Error('stored credentials are in an unknown format');
    const raw = Buffer.from(payload, 'base64');
    const decipher = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, 12));
    decipher.setAuthTag(raw.subarray(12, 28));
    try {
      return JSON.parse(
        Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8'),
      ) as StringMap;
    } catch {
      throw new Error(
        'stored credentials cannot be decrypted: api.encryption_key is not the key they were stored with',
      );
    }
  }
}
