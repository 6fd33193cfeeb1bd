/** Why a candidate bundle was refused; stable, shown in GetStatus before the message. */
export type BundleRejectionReason =
  | 'empty-file'
  | 'binary-file'
  | 'pem-invalid'
  | 'no-certificate'
  | 'certificate-invalid'
  | 'chain-invalid'
  | 'chain-incomplete'
  | 'leaf-not-first'
  | 'multiple-private-keys'
  | 'encrypted-key'
  | 'key-invalid'
  | 'key-unsupported'
  | 'key-mismatch'
  | 'files-disagree'
  | 'not-yet-valid'
  | 'expired'
  | 'names-missing';

/**
 * Thrown when a candidate bundle must not be accepted; `reason` is stable for status mapping.
 * Messages name paths, labels, lines, fingerprints, dates and DNS names; never key bytes.
 */
export class BundleValidationError extends Error {
  override readonly name = 'BundleValidationError';
  readonly reason: BundleRejectionReason;
  readonly path?: string;

  constructor(
    reason: BundleRejectionReason,
    message: string,
    context: { path?: string; cause?: unknown } = {},
  ) {
    super(message, context.cause === undefined ? undefined : { cause: context.cause });
    this.reason = reason;
    if (context.path !== undefined) {
      this.path = context.path;
    }
  }
}
