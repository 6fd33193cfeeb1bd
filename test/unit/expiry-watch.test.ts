import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import pino from 'pino';
import { assessExpiry } from '../../server/expiry-decision';
import { ExpiryWatch } from '../../server/expiry-watch';
import type { BundleVersion, RejectedCandidateRecord } from '../../server/version-store';

// The expiry decision is a pure function of now, notAfter, the window and the last renewal seen;
// the watch logs one line per change of verdict and clears when a renewal is accepted.

const DAY_MS = 86_400_000;
const NOW = new Date('2026-12-04T06:00:00Z');
const WINDOW_MS = 14 * DAY_MS;
const ACCEPTED = new Date('2026-09-05T06:00:00Z');

describe('assessExpiry', () => {
  it('is ok while the leaf lives longer than the window', () => {
    const verdict = assessExpiry({
      now: NOW,
      notAfter: new Date(NOW.getTime() + 15 * DAY_MS),
      acceptedAt: ACCEPTED,
      windowMs: WINDOW_MS,
    });
    assert.deepEqual(verdict, { kind: 'ok', secondsLeft: 15 * 86_400 });
  });

  it('warns inside the window, naming the date, the days left and the last renewal', () => {
    const notAfter = new Date(NOW.getTime() + 5 * DAY_MS);
    const verdict = assessExpiry({ now: NOW, notAfter, acceptedAt: ACCEPTED, windowMs: WINDOW_MS });
    assert.equal(verdict.secondsLeft, 5 * 86_400);
    assert.ok(verdict.kind === 'expiring');
    assert.match(
      verdict.message,
      /expires at 2026-12-09T06:00:00\.000Z \(in 5 days\) and no renewal has been accepted since 2026-09-05T06:00:00\.000Z/,
    );
  });

  it('the window edge itself warns; one millisecond outside does not', () => {
    const at = (ms: number) =>
      assessExpiry({
        now: NOW,
        notAfter: new Date(NOW.getTime() + ms),
        acceptedAt: ACCEPTED,
        windowMs: WINDOW_MS,
      }).kind;
    assert.equal(at(WINDOW_MS), 'expiring');
    assert.equal(at(WINDOW_MS + 1), 'ok');
  });

  it('a leaf already past notAfter is expired; hours are shown under two days', () => {
    const expired = assessExpiry({
      now: NOW,
      notAfter: new Date(NOW.getTime() - 1000),
      acceptedAt: ACCEPTED,
      windowMs: WINDOW_MS,
    });
    assert.ok(expired.kind === 'expired' && /EXPIRED at/.test(expired.message));
    const soon = assessExpiry({
      now: NOW,
      notAfter: new Date(NOW.getTime() + 30 * 3_600_000),
      acceptedAt: ACCEPTED,
      windowMs: WINDOW_MS,
    });
    assert.ok(soon.kind === 'expiring' && /\(in 30 h\)/.test(soon.message));
  });

  it('names a rejected candidate that came after the current version, and ignores an older one', () => {
    const notAfter = new Date(NOW.getTime() + 3 * DAY_MS);
    const newer = assessExpiry({
      now: NOW,
      notAfter,
      acceptedAt: ACCEPTED,
      windowMs: WINDOW_MS,
      lastRejected: { at: new Date('2026-12-01T00:00:00Z'), reason: 'key-mismatch' },
    });
    assert.ok(newer.kind === 'expiring' && /was rejected: key-mismatch/.test(newer.message));
    const older = assessExpiry({
      now: NOW,
      notAfter,
      acceptedAt: ACCEPTED,
      windowMs: WINDOW_MS,
      lastRejected: { at: new Date('2026-09-01T00:00:00Z'), reason: 'expired' },
    });
    assert.ok(older.kind === 'expiring' && !/rejected/.test(older.message));
  });
});

function versionWith(version: number, notAfter: Date, acceptedAt: Date): BundleVersion {
  return {
    bundle: 'example',
    version,
    acceptedAt,
    sourceDir: '/src',
    digest: String(version),
    files: [],
    validated: {
      leaf: {
        subject: 'CN=x',
        issuer: 'CN=ca',
        dnsNames: ['x'],
        serial: '01',
        notBefore: acceptedAt,
        notAfter,
        fingerprintSha256: 'ab'.repeat(32),
      },
      chain: [],
      keyType: 'ec P-256',
      warnings: [],
    },
  } as BundleVersion;
}

describe('ExpiryWatch', () => {
  it('logs a warning once per change of verdict and clears it when a renewal is accepted', () => {
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    });
    let now = NOW;
    let current = versionWith(1, new Date(NOW.getTime() + 20 * DAY_MS), ACCEPTED);
    const rejected: RejectedCandidateRecord | undefined = undefined;
    const watch = new ExpiryWatch({
      bundleNames: ['example', 'empty'],
      store: {
        current: (bundle) => (bundle === 'example' ? current : undefined),
        lastRejected: () => rejected,
      },
      windowDays: 14,
      log: pino({ level: 'info' }, sink),
      now: () => now,
    });

    watch.evaluate();
    assert.equal(watch.warning('example'), '');
    assert.equal(watch.warning('empty'), '', 'a bundle without a version has no warning');
    now = new Date(NOW.getTime() + 7 * DAY_MS);
    watch.evaluate();
    watch.evaluate();
    now = new Date(now.getTime() + DAY_MS);
    watch.evaluate();
    assert.match(
      watch.warning('example'),
      /in 12 days/,
      'the text follows time even without a new log line',
    );
    const warnings = lines.filter((line) => line['msg'] === 'Certificate expiry warning');
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]!['level'], 40);
    assert.deepEqual(
      [warnings[0]!['bundle'], warnings[0]!['version'], warnings[0]!['state']],
      ['example', 1, 'expiring'],
    );

    current = versionWith(2, new Date(now.getTime() + 90 * DAY_MS), now);
    watch.evaluate();
    assert.equal(watch.warning('example'), '');
    const cleared = lines.filter((line) => line['msg'] === 'Certificate expiry warning cleared');
    assert.equal(cleared.length, 1);
    assert.equal(cleared[0]!['version'], 2);
  });
});
