import assert from 'node:assert/strict';

import type { ExpectedOutcome } from './corpus-case';

/** What the intake (or a running server's GetStatus) reported for one candidate. */
export type ObservedOutcome =
  | { kind: 'accepted'; version: number; warnings: readonly string[] }
  | { kind: 'rejected'; reason: string; message: string };

/** Every 12-character run of base64 inside the PRIVATE KEY blocks of `texts`. */
export function keyBase64Windows(texts: readonly string[]): string[] {
  const windows = new Set<string>();
  for (const text of texts) {
    const blocks = text.match(
      /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g,
    );
    for (const line of (blocks ?? []).join('\n').split(/\r?\n/)) {
      if (!/^[A-Za-z0-9+/=]{12,}$/.test(line)) continue;
      for (let start = 0; start + 12 <= line.length; start += 4)
        windows.add(line.slice(start, start + 12));
    }
  }
  return [...windows];
}

/**
 * Asserts that `observed` is `expected`. A rejection must also name `pathHint` (the case's tree)
 * and hold no key material; an unexpected warning fails an 'accepted' case.
 */
export function assertOutcome(
  observed: ObservedOutcome,
  expected: ExpectedOutcome,
  context: { caseName: string; pathHint: string; keyWindows: readonly string[] },
): void {
  const label = `case ${context.caseName}`;
  if (expected.kind === 'rejected') {
    assert.equal(
      observed.kind,
      'rejected',
      `${label}: expected a rejection, got ${JSON.stringify(observed)}`,
    );
    if (observed.kind !== 'rejected') return;
    assert.equal(observed.reason, expected.reason, `${label}: ${observed.message}`);
    assert.match(observed.message, expected.message, label);
    assert.ok(
      observed.message.includes(context.pathHint),
      `${label}: message names no path: ${observed.message}`,
    );
    for (const window of context.keyWindows) {
      assert.ok(!observed.message.includes(window), `${label}: message holds key base64`);
    }
    return;
  }

  assert.equal(
    observed.kind,
    'accepted',
    `${label}: expected acceptance, got ${JSON.stringify(observed)}`,
  );
  if (observed.kind !== 'accepted') return;
  if (expected.kind === 'accepted') {
    assert.deepEqual(observed.warnings, [], `${label}: unexpected warnings`);
  } else {
    assert.ok(
      observed.warnings.some((warning) => expected.warning.test(warning)),
      `${label}: no warning matches ${expected.warning}: ${JSON.stringify(observed.warnings)}`,
    );
  }
}
