import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SyncResponse, type AgentHello } from '../../common/contract';
import { sha256Hex } from '../../common/digest';
import { createSilentLogger } from '../../common/log';
import { createAgentServiceDefinition } from '../../server/agent-service-definition';
import { FanoutHub, type AgentSession } from '../../server/fanout-hub';
import { Fleet } from '../../server/fleet';
import type { VersionStorage } from '../../server/state-store';
import type { BundleVersion } from '../../server/version-store';

// A distribution builds one push message and the AgentService serializer encodes it once; every
// agent must still get the whole bundle, byte for byte.

const fullchain = Buffer.from('-----BEGIN CERTIFICATE-----\nfullchain\n');
const privkey = Buffer.from('-----BEGIN PRIVATE KEY-----\nkey\n');

function bundleVersion(version: number): BundleVersion {
  const file = (target: string, mode: number, content: Buffer) => ({
    source: target,
    target,
    mode,
    owner: undefined,
    sha256: sha256Hex(content),
    size: content.length,
    content,
  });
  return {
    bundle: 'web',
    version,
    files: [file('full.crt', 0o644, fullchain), file('key.pem', 0o600, privkey)],
  } as unknown as BundleVersion;
}

describe('FanoutHub shared push', () => {
  it('sends every agent the same encoded bytes, holding the full bundle', () => {
    const serialize = createAgentServiceDefinition().sync.responseSerialize;
    let current: BundleVersion | undefined;
    const store = { current: () => current } as unknown as VersionStorage;
    const hub = new FanoutHub(store, new Fleet(), ['web'], createSilentLogger());
    const received = new Map<string, Buffer[]>();
    for (let index = 0; index < 25; index += 1) {
      const nodeId = `node-${index}`;
      const session: AgentSession = {
        nodeId,
        peer: 'test',
        send: (message) => received.get(nodeId)!.push(serialize(message)),
      };
      received.set(nodeId, []);
      const hello: AgentHello = {
        nodeId,
        hostname: nodeId,
        agentVersion: 't',
        dir: '/',
        files: [],
      };
      hub.attach(session, hello);
    }

    current = bundleVersion(2);
    hub.distribute(current);

    const pushes = [...received.values()].map((messages) => messages.at(-1)!);
    assert.equal(pushes.length, 25);
    for (const bytes of pushes) assert.equal(bytes, pushes[0], 'one encoding, shared');
    const decoded = SyncResponse.decode(pushes[0]!);
    assert.equal(decoded.message?.$case, 'push');
    const push = decoded.message.value;
    assert.equal(push.version, 2);
    assert.equal(push.manifestOnly, false);
    assert.deepEqual(
      push.files.map((file) => [file.target, Buffer.from(file.content).toString(), file.sha256]),
      [
        ['full.crt', fullchain.toString(), sha256Hex(fullchain)],
        ['key.pem', privkey.toString(), sha256Hex(privkey)],
      ],
    );
    assert.deepEqual(
      Buffer.from(pushes[0]!),
      Buffer.from(SyncResponse.encode(SyncResponse.decode(pushes[0]!)).finish()),
    );
  });

  it('encodes a new message object anew: a later version is not served stale bytes', () => {
    const serialize = createAgentServiceDefinition().sync.responseSerialize;
    let current: BundleVersion | undefined;
    const store = { current: () => current } as unknown as VersionStorage;
    const hub = new FanoutHub(store, new Fleet(), ['web'], createSilentLogger());
    const sent: Buffer[] = [];
    hub.attach(
      { nodeId: 'a', peer: 'test', send: (message) => sent.push(serialize(message)) },
      { nodeId: 'a', hostname: 'a', agentVersion: 't', dir: '/', files: [] },
    );
    for (const version of [2, 3]) {
      current = bundleVersion(version);
      hub.distribute(current);
    }
    const versions = sent.map((bytes) => {
      const message = SyncResponse.decode(bytes).message;
      return message?.$case === 'push' ? message.value.version : 0;
    });
    assert.deepEqual(versions, [2, 3]);
  });
});
