import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';

import { checkTools } from '../support/tools';
import { CONTENT_CASES } from './content-cases';
import { createCorpusMaterials } from './corpus-materials';

/**
 * Go parity: every content case of the corpus loaded by Go's own tls.LoadX509KeyPair (what Vault
 * does with its tls_cert_file and tls_key_file), compared with the case's `go` column. This pins
 * the "Go's behaviour" column of the README's validation decisions to a real Go, so a Go release
 * that changes it fails here rather than in production. Needs `go` (apt-get install golang-go).
 */

const tools = checkTools(['go']);
const LOADER = path.resolve(__dirname, '../../../test/corpus/go-parity/x509keypair.go');
const runFile = promisify(execFile);

describe('Go crypto/tls on the corpus', () => {
  let workDir: string;

  before(async () => {
    workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-go-parity-'));
  });

  after(async () => {
    if (!process.env['CERTSYNC_KEEP_TEST_DIRS'])
      await fs.rm(workDir, { recursive: true, force: true });
  });

  test(
    'tls.LoadX509KeyPair loads or refuses each case as the table says',
    { skip: tools.skip },
    async () => {
      const { go } = tools.require();
      const materials = await createCorpusMaterials();
      const casesDir = path.join(workDir, 'cases');
      for (const corpusCase of CONTENT_CASES) {
        const contents = corpusCase.contents(materials);
        const dir = path.join(casesDir, corpusCase.name);
        await fs.mkdir(dir, { recursive: true });
        await fs.writeFile(path.join(dir, 'fullchain.pem'), contents.fullchain);
        await fs.writeFile(path.join(dir, 'privkey.pem'), contents.privkey, { mode: 0o600 });
      }

      // No go.mod anywhere near: the loader is one standard-library file, run as is.
      const env = {
        ...process.env,
        GOCACHE: path.join(os.tmpdir(), 'certsync-go-cache'),
        GOFLAGS: '',
      };
      const { stdout } = await runFile(go!, ['run', LOADER, casesDir], { cwd: workDir, env });
      const results = new Map(
        stdout
          .trim()
          .split('\n')
          .map((line) => line.split('\t'))
          .map(([name, verdict, error]) => [name, { verdict, error }] as const),
      );

      const differences = CONTENT_CASES.filter(
        (corpusCase) => results.get(corpusCase.name)?.verdict !== corpusCase.go,
      ).map(
        (corpusCase) =>
          `${corpusCase.name}: table says Go ${corpusCase.go}, Go ${JSON.stringify(results.get(corpusCase.name))}`,
      );
      assert.deepEqual(differences, []);
      assert.equal(results.size, CONTENT_CASES.length);
    },
  );
});
