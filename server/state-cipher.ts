import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** First bytes of every sealed object, so a foreign or older format is recognised, not misread. */
const FORMAT_MAGIC = Buffer.from('CSS1');

/** Thrown when the state key file is missing or does not hold a 32-byte key. Never holds key bytes. */
export class StateKeyError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StateKeyError';
  }
}

/**
 * Thrown when a sealed object does not open: another state key, a changed object, or another
 * bundle/version's object under this name (the AAD binds each object to its place).
 */
export class StateDecryptionError extends Error {
  constructor(
    readonly context: string,
    options?: { cause?: unknown },
  ) {
    super(
      `state object ${context} does not decrypt with the state key (wrong stateStore.keyFile, or the object was changed)`,
      options,
    );
    this.name = 'StateDecryptionError';
  }
}

/**
 * Reads the AES-256 state key: 64 hex characters, or 32 bytes in base64 (`openssl rand -hex 32`
 * or `openssl rand -base64 32`), surrounding whitespace ignored.
 */
export function loadStateKey(keyFile: string): Buffer {
  let text: string;
  try {
    text = readFileSync(keyFile, 'utf8').trim();
  } catch (error) {
    throw new StateKeyError(
      `cannot read stateStore.keyFile ${keyFile}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
      {
        cause: error,
      },
    );
  }
  const key = /^[0-9a-fA-F]{64}$/.test(text)
    ? Buffer.from(text, 'hex')
    : Buffer.from(text, 'base64');
  if (
    key.length !== KEY_BYTES ||
    (!/^[0-9a-fA-F]{64}$/.test(text) && !/^[A-Za-z0-9+/]{43}=$/.test(text))
  ) {
    throw new StateKeyError(
      `stateStore.keyFile ${keyFile} must hold a 32-byte key as 64 hex characters or base64 (make one with: openssl rand -hex 32)`,
    );
  }
  return key;
}

/** Authenticated encryption (AES-256-GCM) of state objects; `aad` names the object's place. */
export class StateCipher {
  constructor(private readonly key: Buffer) {
    if (key.length !== KEY_BYTES)
      throw new StateKeyError(`the state key must be ${KEY_BYTES} bytes`);
  }

  /** magic ‖ IV (random, 12 bytes) ‖ tag (16 bytes) ‖ ciphertext. */
  seal(plaintext: Buffer, aad: string): Buffer {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(Buffer.from(aad, 'utf8'));
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([FORMAT_MAGIC, iv, cipher.getAuthTag(), ciphertext]);
  }

  open(sealed: Buffer, aad: string): Buffer {
    const headerBytes = FORMAT_MAGIC.length + IV_BYTES + TAG_BYTES;
    if (
      sealed.length < headerBytes ||
      !sealed.subarray(0, FORMAT_MAGIC.length).equals(FORMAT_MAGIC)
    ) {
      throw new StateDecryptionError(aad);
    }
    const iv = sealed.subarray(FORMAT_MAGIC.length, FORMAT_MAGIC.length + IV_BYTES);
    const tag = sealed.subarray(FORMAT_MAGIC.length + IV_BYTES, headerBytes);
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, iv);
      decipher.setAAD(Buffer.from(aad, 'utf8'));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(sealed.subarray(headerBytes)), decipher.final()]);
    } catch (error) {
      throw new StateDecryptionError(aad, { cause: error });
    }
  }
}
