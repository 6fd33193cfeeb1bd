import { promises as fs } from 'node:fs';
import path from 'node:path';
import {
  createCertbotTree,
  LINK_ORDER,
  linkTarget,
  highestArchiveVersion,
} from '../test/support/certbot-tree';
import {
  createWildcardSet,
  issueLeaf,
  type CertbotPemSet,
  type IssuedCertificate,
} from '../test/support/pki';

export const BENCH_DOMAIN = 'example.test';

/**
 * A certbot-shaped lineage the benchmark renews again and again. Renewed sets are issued ahead of
 * time, so key generation never falls inside a measured interval.
 */
export class BenchLineage {
  private readonly prepared: CertbotPemSet[] = [];

  private constructor(
    readonly root: string,
    readonly liveDir: string,
    readonly archiveDir: string,
    private readonly intermediate: IssuedCertificate,
    public current: CertbotPemSet,
  ) {}

  static async create(root: string): Promise<BenchLineage> {
    const first = await createWildcardSet({ domain: BENCH_DOMAIN });
    const { liveDir, archiveDir } = await createCertbotTree(root, BENCH_DOMAIN, first.pems);
    return new BenchLineage(root, liveDir, archiveDir, first.intermediate, first.pems);
  }

  /** Issues `count` renewed sets for later renewals. */
  async prepare(count: number): Promise<void> {
    for (let index = 0; index < count; index += 1) {
      const leaf = await issueLeaf(this.intermediate, {
        commonName: `*.${BENCH_DOMAIN}`,
        dnsNames: [`*.${BENCH_DOMAIN}`, BENCH_DOMAIN],
      });
      this.prepared.push({
        cert: leaf.certPem,
        chain: this.intermediate.certPem,
        fullchain: leaf.certPem + this.intermediate.certPem,
        privkey: leaf.keyPem,
      });
    }
  }

  /**
   * Renews like certbot (archive files first, then each live link unlinked and re-created in
   * certbot's order) and returns the wall-clock time the last link was swapped.
   */
  async renew(): Promise<{ swappedAtMs: number; pems: CertbotPemSet }> {
    if (this.prepared.length === 0) await this.prepare(1);
    const pems = this.prepared.shift() as CertbotPemSet;
    const version = (await highestArchiveVersion(this.archiveDir)) + 1;
    for (const linkName of LINK_ORDER) {
      const file = path.join(this.archiveDir, `${linkName}${version}.pem`);
      const mode = linkName === 'privkey' ? 0o600 : 0o644;
      await fs.writeFile(file, pems[linkName], { mode });
      await fs.chmod(file, mode);
    }
    for (const linkName of LINK_ORDER) {
      const link = path.join(this.liveDir, `${linkName}.pem`);
      await fs.unlink(link);
      await fs.symlink(linkTarget(BENCH_DOMAIN, linkName, version), link);
    }
    const swappedAtMs = Date.now();
    this.current = pems;
    return { swappedAtMs, pems };
  }
}
