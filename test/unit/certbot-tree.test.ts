import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { createCertbotTree, renewCertbotTree } from '../support/certbot-tree';
import { createWildcardSet, type CertbotPemSet } from '../support/pki';

const LINEAGE = 'example.test';
const FILE_NAMES = ['cert', 'chain', 'fullchain', 'privkey'] as const;

let root: string;
before(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-certbot-tree-'));
});
after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

test('renewing twice leaves relative live links on version 3 with the third set of bytes', async () => {
  const sets: CertbotPemSet[] = [];
  for (let index = 0; index < 3; index++) sets.push((await createWildcardSet()).pems);
  const [first, second, third] = sets as [CertbotPemSet, CertbotPemSet, CertbotPemSet];

  const { liveDir, archiveDir } = await createCertbotTree(root, LINEAGE, first);
  assert.equal(liveDir, path.join(root, 'live', LINEAGE));
  assert.equal(archiveDir, path.join(root, 'archive', LINEAGE));
  assert.equal(await fs.readFile(path.join(liveDir, 'fullchain.pem'), 'utf8'), first.fullchain);

  assert.deepEqual(await renewCertbotTree(root, LINEAGE, second), { version: 2 });
  assert.deepEqual(await renewCertbotTree(root, LINEAGE, third, { delayBetweenLinksMs: 5 }), {
    version: 3,
  });

  for (const name of FILE_NAMES) {
    const link = path.join(liveDir, `${name}.pem`);
    assert.equal(await fs.readlink(link), `../../archive/${LINEAGE}/${name}3.pem`);
    assert.equal(await fs.readFile(link, 'utf8'), third[name]);
    assert.equal(await fs.readFile(path.join(archiveDir, `${name}1.pem`), 'utf8'), first[name]);
    assert.equal(await fs.readFile(path.join(archiveDir, `${name}2.pem`), 'utf8'), second[name]);
  }
  for (const version of [1, 2, 3]) {
    const keyStat = await fs.stat(path.join(archiveDir, `privkey${version}.pem`));
    assert.equal(keyStat.mode & 0o777, 0o600);
  }
  assert.deepEqual((await fs.readdir(liveDir)).sort(), [
    'README',
    'cert.pem',
    'chain.pem',
    'fullchain.pem',
    'privkey.pem',
  ]);
});

test('renewing a lineage that was never created fails with the archive path', async () => {
  await fs.mkdir(path.join(root, 'archive', 'empty'), { recursive: true });
  const pems = (await createWildcardSet()).pems;

  await assert.rejects(
    renewCertbotTree(root, 'empty', pems),
    /no certbot archive files in .*empty/,
  );
});
