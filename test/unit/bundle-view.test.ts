import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BundleInfo } from '../../common/contract';
import { formatBundle } from '../../ctl/status-table';

// `certsyncctl bundle show` without --json: the modes read as in the config (octal), owners and
// digests whole, the certificates' public parts.

test('bundle show lists files with octal modes and the certificates', () => {
  const bundle: BundleInfo = {
    name: 'iklim-co',
    version: 7,
    acceptedAt: new Date('2026-12-04T10:00:00Z'),
    source: '/etc/letsencrypt/live/iklim.co',
    keyType: 'ec-p256',
    files: [
      {
        source: 'fullchain.pem',
        target: 'iklim.co.crt',
        mode: 0o644,
        sha256: 'a'.repeat(64),
        size: 2900,
        owner: undefined,
      },
      {
        source: 'privkey.pem',
        target: 'iklim.co.key',
        mode: 0o600,
        sha256: 'b'.repeat(64),
        size: 241,
        owner: { uid: 100, gid: 1000 },
      },
    ],
    leaf: {
      subject: 'CN=*.iklim.co',
      issuer: 'CN=Example Intermediate',
      dnsNames: ['*.iklim.co', 'iklim.co'],
      serial: '01AB',
      notBefore: new Date('2026-12-01T00:00:00Z'),
      notAfter: new Date('2027-03-01T00:00:00Z'),
      fingerprintSha256: 'c'.repeat(64),
    },
    chain: [
      {
        subject: 'CN=Example Intermediate',
        issuer: 'CN=Example Root',
        dnsNames: [],
        serial: '02',
        notBefore: new Date('2026-01-01T00:00:00Z'),
        notAfter: new Date('2031-01-01T00:00:00Z'),
        fingerprintSha256: 'd'.repeat(64),
      },
    ],
    warnings: ['leaf expires in 87 days'],
  };
  const text = formatBundle(bundle);
  const lines = text.split('\n');
  assert.equal(lines[0], 'bundle iklim-co  ·  version 7  ·  accepted 2026-12-04T10:00:00.000Z');
  const row = (target: string) => lines.find((line) => line.includes(target)) ?? '';
  assert.match(row('iklim.co.crt'), /fullchain\.pem .*0644 .*- .*2900 .*a{64}/);
  assert.match(row('iklim.co.key'), /privkey\.pem .*0600 .*100:1000 .*241 .*b{64}/);
  assert.match(text, /^leaf: CN=\*\.iklim\.co$/m);
  assert.match(text, /valid {7}2026-12-01T00:00:00\.000Z → 2027-03-01T00:00:00\.000Z/);
  assert.match(text, /DNS names {3}\*\.iklim\.co, iklim\.co/);
  assert.match(text, /^issuer 1: CN=Example Intermediate$/m);
  assert.match(text, /^WARNING leaf expires in 87 days$/m);
});
