import { createHash } from 'node:crypto';
import { createSilentLogger } from '../../common/log';
import { ApplyError } from '../../agent/apply-error';
import { BundleWriter } from '../../agent/writer';

// A child process that applies one single-file bundle with the agent's real writer and prints the
// outcome as one JSON line: { ok: true } or { ok: false, code, path, message }. The disk-error
// tests run it as another user, to meet EACCES the way an agent not running as root would.
// Usage: node apply-once.js DIR TARGET TEXT

async function main(dir: string, target: string, text: string): Promise<void> {
  const writer = new BundleWriter({ dir, logger: createSilentLogger() });
  const content = Buffer.from(text);
  const sha256 = createHash('sha256').update(content).digest('hex');
  const file = { target, mode: 0o600, sha256, size: content.length, content, owner: undefined };
  try {
    await writer.applyBundle({ bundle: 'once', version: 1, manifestOnly: false, files: [file] });
    process.stdout.write(`${JSON.stringify({ ok: true })}\n`);
  } catch (error) {
    if (!(error instanceof ApplyError)) throw error;
    const { code, relativePath: path, message } = error;
    process.stdout.write(`${JSON.stringify({ ok: false, code, path, message })}\n`);
  }
}

if (require.main === module) {
  const [dir, target, text] = process.argv.slice(2);
  if (!dir || !target || text === undefined) throw new Error('usage: apply-once DIR TARGET TEXT');
  void main(dir, target, text);
}
