import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { createSilentLogger } from '../../common/log';
import { parseServerConfig } from '../../server/config';
import type { DockerClient } from '../../server/docker-client';
import { Prover } from '../../server/prover';

// A replica that accepts TCP but never answers the TLS handshake: the proof must give up at
// verify.timeoutMs, not one attempt timeout (5 s) later.
test('a replica that never completes a handshake fails the proof at its deadline', async () => {
  const sockets: net.Socket[] = [];
  const silent = net.createServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const port = (silent.address() as net.AddressInfo).port;
  try {
    const config = parseServerConfig({
      insecure: true,
      bundles: [
        {
          name: 'web',
          source: '/live',
          files: [{ source: 'c.pem', target: 'c.pem' }],
          reload: [
            {
              service: 'vault',
              action: 'signal',
              verify: { tls: { port, endpoints: [`127.0.0.1:${port}`] }, timeoutMs: 1500 },
            },
          ],
        },
      ],
    });
    const verify = config.bundles[0]!.reload[0]!.verify!;
    const noDocker = (): DockerClient => {
      throw new Error('endpoints are configured; Docker is not asked');
    };
    const prover = new Prover(noDocker, createSilentLogger());

    const started = Date.now();
    const result = await prover.prove('vault', verify, {
      version: 1,
      fingerprintSha256: 'ab'.repeat(32),
    });
    const elapsedMs = Date.now() - started;

    assert.equal(result.ok, false);
    assert.match(result.replicas[0]?.error ?? '', /no TLS handshake within \d+ ms/);
    // One 5 s attempt (the cap) would already overrun; allow scheduling slack, not a second attempt.
    assert.ok(elapsedMs < 1500 + 2000, `gave up after ${elapsedMs} ms`);
  } finally {
    for (const socket of sockets) socket.destroy();
    silent.close();
  }
});
