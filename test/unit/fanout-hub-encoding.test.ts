import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { SyncResponse, type AgentHello } from '../../common/contract';
import { createSilentLogger } from '../../common/log';
import {
  AGENT_SERVICE_DEFINITION,
  EncodedSyncResponse,
  type OutgoingSyncResponse,
} from '../../server/encoded-response';
import { FanoutHub, type AgentSession } from '../../server/fanout-hub';
import { Fleet } from '../../server/fleet';
import type { VersionStorage } from '../../server/state-store';
import type { BundleVersion } from '../../server/version-store';

// A push is encoded once and the same bytes go to every agent; they must decode to the push the
// agent needs, and the stream serializer must write them unchanged.

const content = Buffer.from('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
const version = {
  bundle: 'web',
  version: 7,
  acceptedAt: new Date('2026-01-01T00:00:00Z'),
  sourceDir: '/live/web',
  digest: 'd',
  files: [
    {
      source: 'fullchain.pem',
      target: 'web.crt',
      mode: 0o644,
      sha256: createHash('sha256').update(content).digest('hex'),
      size: content.length,
      content,
    },
  ],
  validated: {},
} as unknown as BundleVersion;

function recordingSession(nodeId: string, sent: OutgoingSyncResponse[]): AgentSession {
  return { nodeId, peer: `peer-${nodeId}`, send: (message) => sent.push(message) };
}

function hello(nodeId: string): AgentHello {
  return { nodeId, hostname: nodeId, agentVersion: 'test', dir: '/ssl', files: [] };
}

test('every agent gets the same encoded push, and it decodes to the version with its bytes', () => {
  const store = { current: () => version } as unknown as VersionStorage;
  const hub = new FanoutHub(store, new Fleet(), ['web'], createSilentLogger());
  const first: OutgoingSyncResponse[] = [];
  const second: OutgoingSyncResponse[] = [];
  hub.attach(recordingSession('node-1', first), hello('node-1'));
  hub.attach(recordingSession('node-2', second), hello('node-2'));
  hub.distribute(version);

  assert.equal(first.length, 2);
  const [atConnect, distributed] = first;
  assert.ok(atConnect instanceof EncodedSyncResponse);
  assert.equal(second[0], atConnect, 'one encoding shared by both agents');
  assert.equal(distributed, atConnect, 'and reused by the later distribution');

  const decoded = SyncResponse.decode(atConnect.bytes).message;
  assert.equal(decoded?.$case, 'push');
  const push = decoded.value;
  assert.equal(push.version, 7);
  assert.equal(push.manifestOnly, false);
  assert.deepEqual(Buffer.from(push.files[0]?.content ?? []), content);
  assert.equal(push.files[0]?.sha256, version.files[0]?.sha256);
});

test('the Sync serializer writes encoded responses as they are and encodes the rest', () => {
  const serialize = AGENT_SERVICE_DEFINITION.sync.responseSerialize;
  const encoded = EncodedSyncResponse.encode({
    message: { $case: 'push', value: { bundle: 'web', version: 1, manifestOnly: true, files: [] } },
  });
  assert.equal(serialize(encoded), encoded.bytes);
  const plain: SyncResponse = {
    message: { $case: 'push', value: { bundle: 'web', version: 1, manifestOnly: true, files: [] } },
  };
  assert.deepEqual(serialize(plain), encoded.bytes);
});
