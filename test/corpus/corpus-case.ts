import type { CertbotFileContents } from '../support/certbot-tree';
import type { CorpusMaterials } from './corpus-materials';

/**
 * One bad (or borderline) input and what certsync must do with it. Cases are data: the unit
 * runner (corpus.test.ts) puts each through the real intake on a real certbot-shaped folder, and
 * the fleet test (test/integration/corpus-fleet.test.ts) sends some through a running server.
 */

/** What must happen to a candidate. `reason` is the stable code shown first in GetStatus. */
export type ExpectedOutcome =
  | { kind: 'accepted' }
  | { kind: 'accepted-with-warning'; warning: RegExp }
  | { kind: 'rejected'; reason: string; message: RegExp };

/** Bundle settings a case may change from the corpus default. */
export interface CaseBundleSettings {
  requireChain?: boolean;
  expectNames?: string[];
}

/** A certbot-shaped folder a source-tree case works on (already holding a valid version 1). */
export interface CorpusTree {
  /** The letsencrypt folder (holds live/ and archive/). */
  root: string;
  name: string;
  liveDir: string;
  archiveDir: string;
  /** A folder outside the letsencrypt tree, for links that leave it. */
  outsideDir: string;
  /**
   * Lets the source be taken in now and asserts the outcome; used by cases that check a state
   * on the way (the first half of a file). The unit runner checks at once; the fleet test waits
   * for the server to report it.
   */
  expectNow(expected: ExpectedOutcome): Promise<void>;
}

interface CaseBase {
  /** Kebab-case, unique: also the temp folder's name. */
  name: string;
  /** One line: what the input is and why the outcome is right. */
  description: string;
  expected: ExpectedOutcome;
  bundle?: CaseBundleSettings;
}

/** A candidate given as the four files certbot writes; the runner puts them in a tree. */
export interface ContentCase extends CaseBase {
  type: 'content';
  /**
   * What Go's tls.LoadX509KeyPair(fullchain.pem, privkey.pem) does with it (Vault's loader):
   * the "Go's behaviour" column of the README table, checked by go-parity.test.ts when Go is
   * installed.
   */
  go: 'loads' | 'refuses';
  contents: (materials: CorpusMaterials) => CertbotFileContents;
}

/** A change to a tree that holds a valid version 1: links, swaps, files written in steps. */
export interface SourceTreeCase extends CaseBase {
  type: 'source-tree';
  arrange: (tree: CorpusTree, materials: CorpusMaterials) => Promise<void>;
}

export type CorpusCase = ContentCase | SourceTreeCase;
