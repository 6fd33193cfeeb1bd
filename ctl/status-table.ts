import Table from 'cli-table3';
import type {
  BundleInfo,
  CertificateInfo,
  GetStatusResponse,
  NodeInfo,
  ProofResult,
  RolloutInfo,
} from '../common/contract';

/** Renders GetStatus as the fleet table operators read: one row per bundle and node. */
export function formatStatusTable(status: GetStatusResponse, now: Date = new Date()): string {
  const nodesById = new Map(status.nodes.map((node) => [node.nodeId, node]));
  const sections: string[] = [];

  for (const bundle of status.bundles) {
    const expiresInDays = bundle.notAfter
      ? Math.floor((bundle.notAfter.getTime() - now.getTime()) / 86_400_000)
      : undefined;
    const header = [
      `bundle ${bundle.name}`,
      bundle.paused
        ? 'PAUSED (nothing is read, distributed or reloaded; `certsyncctl resume` ends it)'
        : undefined,
      `version ${bundle.currentVersion || 'none'}`,
      bundle.notAfter
        ? `expires ${bundle.notAfter.toISOString()} (${expiresInDays} days)`
        : undefined,
      `${bundle.nodesInSync}/${bundle.nodesExpected} nodes in sync`,
    ]
      .filter(Boolean)
      .join('  ·  ');
    const lines = [header];
    if (bundle.leafFingerprintSha256) lines.push(`leaf sha256 ${bundle.leafFingerprintSha256}`);
    if (bundle.expiryWarning) lines.push(`WARNING expiry: ${bundle.expiryWarning}`);
    if (bundle.rollout) lines.push(formatRollout(bundle.rollout));
    if (bundle.lastRejected) {
      lines.push(
        `last rejected candidate (${bundle.lastRejected.at?.toISOString() ?? '?'}): ${bundle.lastRejected.reason}`,
      );
    }

    const table = new Table({
      head: ['node', 'connected', 'version', 'in sync', 'last seen', 'files', 'error'],
      // Colour only for a terminal: piped into a file, grep or a mail, escape codes are noise.
      ...(process.stdout.isTTY ? {} : { style: { head: [], border: [] } }),
    });
    for (const node of bundle.nodes) {
      const info: NodeInfo | undefined = nodesById.get(node.nodeId);
      table.push([
        node.nodeId,
        info?.connected ? 'yes' : 'no',
        String(node.appliedVersion || '-'),
        node.inSync ? 'yes' : 'NO',
        info?.lastSeen ? formatAge(info.lastSeen, now) : '-',
        node.files
          .map((file) => `${file.path} ${file.sha256.slice(0, 12) || 'missing'}`)
          .join('\n'),
        node.lastError ? `${node.lastError.code}: ${node.lastError.message}` : '',
      ]);
    }
    lines.push(bundle.nodes.length > 0 ? table.toString() : '(no agent has connected yet)');
    if (bundle.nodes.some((node) => node.lastError)) {
      lines.push(
        `a node that failed to write retries by itself with backoff; \`certsyncctl rollout restart ${bundle.name}\` re-sends now`,
      );
    }
    sections.push(lines.join('\n'));
  }
  const duplicates = status.nodes.filter((node) => node.duplicateRefusals > 0);
  if (duplicates.length > 0) {
    sections.push(
      duplicates
        .map(
          (node) =>
            `WARNING node ${node.nodeId}: ${node.duplicateRefusals} second agent(s) claimed this node ID and were refused` +
            ` (last from ${node.lastDuplicatePeer} at ${node.lastDuplicateAt?.toISOString() ?? '?'})`,
        )
        .join('\n'),
    );
  }
  return sections.join('\n\n');
}

/** One rollout as a few lines: state, why, and what each reload did. */
export function formatRollout(rollout: RolloutInfo, options: { timeline?: boolean } = {}): string {
  const confirmed = `${rollout.confirmedNodes.filter((node) => rollout.expectedNodes.includes(node)).length}/${rollout.expectedNodes.length} confirmed`;
  const trigger = rollout.rollbackOf
    ? `rollback of version ${rollout.rollbackOf}`
    : rollout.trigger;
  const lines = [
    `rollout of version ${rollout.version}: ${rollout.state.toUpperCase()} (${confirmed}, ${trigger})`,
  ];
  if (rollout.reason) lines.push(`  reason: ${rollout.reason}`);
  if (options.timeline) {
    lines.push(`  ${rollout.startedAt?.toISOString() ?? '?'}  started`);
    for (const step of rollout.transitions)
      lines.push(
        `  ${step.at?.toISOString() ?? '?'}  ${step.from} → ${step.to}${step.detail ? `: ${step.detail}` : ''}`,
      );
  }
  if (rollout.missingNodes.length > 0)
    lines.push(`  waiting for: ${rollout.missingNodes.join(', ')}`);
  for (const reload of rollout.reloads) {
    const what =
      reload.action === 'signal'
        ? `${reload.signal} to ${reload.service}`
        : `force-update of ${reload.service}`;
    const detail = reload.ok
      ? reload.action === 'signal'
        ? `${reload.signals.reduce((sum, node) => sum + node.containers.length, 0)} container(s) on ${reload.signals.length} node(s)`
        : `${reload.tasksBefore.length} task(s) replaced by ${reload.tasksAfter.length}`
      : reload.error;
    lines.push(`  reload: ${what}: ${reload.ok ? 'ok' : 'FAILED'} — ${detail}`);
    for (const warning of reload.warnings) lines.push(`  warning: ${warning}`);
    if (reload.proof) lines.push(formatProof(reload.proof).replace(/^/gm, '  '));
  }
  return lines.join('\n');
}

/** A proof: one line for the service, one per replica. */
export function formatProof(proof: ProofResult): string {
  const lines = [
    `proof of ${proof.service} (version ${proof.version}, leaf ${proof.expectedFingerprintSha256.slice(0, 16)}…): ${proof.ok ? 'ok' : `FAILED — ${proof.error}`}`,
  ];
  for (const replica of proof.replicas) {
    const who = replica.taskId
      ? `task ${replica.taskId.slice(0, 12)} on ${replica.nodeId.slice(0, 12)}`
      : replica.endpoint;
    const served = replica.fingerprintSha256
      ? `serves ${replica.fingerprintSha256.slice(0, 16)}…${replica.matches ? ' (matches)' : ' (DIFFERENT)'}`
      : 'nothing served';
    const notAfter = replica.notAfter ? `, notAfter ${replica.notAfter.toISOString()}` : '';
    const seal = replica.sealState ? `, vault ${replica.sealState}` : '';
    lines.push(
      `  ${replica.ok ? 'ok    ' : 'FAILED'} ${who} ${replica.endpoint}: ${served}${notAfter}${seal}${replica.error ? ` — ${replica.error}` : ''}`,
    );
  }
  return lines.join('\n');
}

/** True when every bundle has a version and every expected node holds it. */
export function isFleetInSync(status: GetStatusResponse): boolean {
  return status.bundles.every(
    (bundle) =>
      bundle.currentVersion > 0 &&
      bundle.nodesExpected > 0 &&
      bundle.nodesInSync === bundle.nodesExpected,
  );
}

function formatAge(at: Date, now: Date): string {
  const seconds = Math.max(0, Math.round((now.getTime() - at.getTime()) / 1000));
  if (seconds < 120) return `${seconds}s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m ago`;
  return `${Math.round(seconds / 3600)}h ago`;
}

/**
 * Renders one bundle version for `certsyncctl bundle show`: its files (modes in octal, as in the
 * config) and the certificates it carries. Nothing here holds key bytes; the server sends none.
 */
export function formatBundle(bundle: BundleInfo): string {
  const accepted = bundle.acceptedAt?.toISOString() ?? '?';
  const lines = [
    `bundle ${bundle.name}  ·  version ${bundle.version}  ·  accepted ${accepted}`,
    `source ${bundle.source}`,
  ];
  if (bundle.keyType) lines.push(`key type ${bundle.keyType}`);
  const files = new Table({
    head: ['target', 'source', 'mode', 'owner', 'bytes', 'sha256'],
    ...(process.stdout.isTTY ? {} : { style: { head: [], border: [] } }),
  });
  for (const file of bundle.files) {
    files.push([
      file.target,
      file.source,
      file.mode.toString(8).padStart(4, '0'),
      file.owner ? `${file.owner.uid}:${file.owner.gid}` : '-',
      String(file.size),
      file.sha256,
    ]);
  }
  lines.push(files.toString());
  if (bundle.leaf) lines.push(formatCertificate('leaf', bundle.leaf));
  bundle.chain.forEach((certificate, index) =>
    lines.push(formatCertificate(`issuer ${index + 1}`, certificate)),
  );
  for (const warning of bundle.warnings) lines.push(`WARNING ${warning}`);
  return lines.join('\n');
}

function formatCertificate(label: string, certificate: CertificateInfo): string {
  const date = (value: Date | undefined) => value?.toISOString() ?? '?';
  const lines = [
    `${label}: ${certificate.subject}`,
    `  issuer      ${certificate.issuer}`,
    `  valid       ${date(certificate.notBefore)} → ${date(certificate.notAfter)}`,
    `  serial      ${certificate.serial}`,
    `  sha256      ${certificate.fingerprintSha256}`,
  ];
  if (certificate.dnsNames.length > 0)
    lines.push(`  DNS names   ${certificate.dnsNames.join(', ')}`);
  return lines.join('\n');
}
