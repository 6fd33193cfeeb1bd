import { describeSettle } from './report';
import type { BenchResults } from './results';

const ROW_HEIGHT = 22;
const LABEL_WIDTH = 300;
const PLOT_WIDTH = 520;
const escape = (text: string) =>
  text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * A horizontal bar chart (log scale) of every p50 time in the run: certsync's detection and
 * propagation per N, then each peer next to certsync's swap → all figure at the same N.
 */
export function renderChart(results: BenchResults): string {
  const rows: { label: string; valueMs: number; certsync: boolean }[] = [];
  for (const entry of results.detection)
    rows.push({
      label: `certsync detection (${describeSettle(entry)})`,
      valueMs: entry.detection.p50Ms,
      certsync: true,
    });
  for (const entry of results.propagation)
    rows.push({
      label: `certsync propagation N=${entry.agents}${entry.nodeFolders === 'tmpfs' ? ' (tmpfs)' : ''}`,
      valueMs: entry.propagation.p50Ms,
      certsync: true,
    });
  const peerNs = [...new Set(results.peers.map((peer) => peer.agents))].sort((a, b) => a - b);
  for (const agents of peerNs) {
    const certsync = results.propagation.find(
      (entry) => entry.agents === agents && entry.nodeFolders === 'disk',
    );
    if (certsync)
      rows.push({
        label: `certsync swap → all, N=${agents}`,
        valueMs: certsync.swapToAll.p50Ms,
        certsync: true,
      });
    for (const peer of results.peers.filter((candidate) => candidate.agents === agents)) {
      rows.push({ label: `${peer.peer}, N=${agents}`, valueMs: peer.time.p50Ms, certsync: false });
    }
  }
  if (results.swarm) {
    const s = results.swarm.summary;
    rows.push({ label: 'swarm: certsync renew → done', valueMs: s.endToEnd.p50Ms, certsync: true });
    rows.push({ label: 'swarm: certsync reload part', valueMs: s.reload.p50Ms, certsync: true });
    rows.push({
      label: 'swarm: secret rotation (create + update)',
      valueMs: s.secretRotationWithCreate.p50Ms,
      certsync: false,
    });
    rows.push({
      label: 'swarm: bare force-update',
      valueMs: s.bareForceUpdate.p50Ms,
      certsync: false,
    });
  }
  const plotted = rows.filter((row) => Number.isFinite(row.valueMs));
  const maxMs = Math.max(10, ...plotted.map((row) => row.valueMs));
  const decades = Math.ceil(Math.log10(maxMs));
  const x = (valueMs: number) => (Math.log10(Math.max(1, valueMs)) / decades) * PLOT_WIDTH;
  const height = plotted.length * ROW_HEIGHT + 60;
  const width = LABEL_WIDTH + PLOT_WIDTH + 90;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="18" font-size="14" font-weight="bold">certsync bench ${escape(results.startedAt)} — p50 in ms (log scale)</text>`,
  ];
  for (let decade = 0; decade <= decades; decade += 1) {
    const gridX = LABEL_WIDTH + (decade / decades) * PLOT_WIDTH;
    parts.push(`<line x1="${gridX}" y1="30" x2="${gridX}" y2="${height - 20}" stroke="#ddd"/>`);
    parts.push(
      `<text x="${gridX}" y="${height - 6}" text-anchor="middle" fill="#666">${10 ** decade}</text>`,
    );
  }
  plotted.forEach((row, index) => {
    const y = 34 + index * ROW_HEIGHT;
    parts.push(
      `<text x="${LABEL_WIDTH - 8}" y="${y + 14}" text-anchor="end">${escape(row.label)}</text>`,
    );
    parts.push(
      `<rect x="${LABEL_WIDTH}" y="${y + 3}" width="${Math.max(1, x(row.valueMs)).toFixed(1)}" height="${ROW_HEIGHT - 6}" fill="${row.certsync ? '#2a7ab0' : '#c8553d'}"/>`,
    );
    parts.push(`<text x="${LABEL_WIDTH + x(row.valueMs) + 4}" y="${y + 14}">${row.valueMs}</text>`);
  });
  parts.push('</svg>', '');
  return parts.join('\n');
}
