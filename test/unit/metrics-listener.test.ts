import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { Counter, Registry } from 'prom-client';
import { createSilentLogger } from '../../common/log';
import { startMetricsListener } from '../../common/metrics-listener';
import { parseScrape } from '../support/prometheus-scrape';

// The plain-HTTP listener shared by server and agent, on a real loopback socket.

describe('startMetricsListener', () => {
  it('serves the registry, health, and readiness with its reasons', async () => {
    const registry = new Registry();
    new Counter({ name: 'certsync_test_total', help: 'test', registers: [registry] }).inc(3);
    let reasons = ['gRPC server not serving yet'];
    const listener = await startMetricsListener({
      listen: '127.0.0.1:0',
      registry,
      notReadyReasons: () => reasons,
      log: createSilentLogger(),
    });
    try {
      const base = `http://127.0.0.1:${listener.port}`;
      const metrics = await fetch(`${base}/metrics`);
      assert.equal(metrics.status, 200);
      assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      assert.equal(parseScrape(await metrics.text()).value('certsync_test_total'), 3);
      assert.equal((await fetch(`${base}/healthz`)).status, 200);

      const notReady = await fetch(`${base}/readyz`);
      assert.equal(notReady.status, 503);
      assert.equal(await notReady.text(), 'gRPC server not serving yet\n');
      reasons = [];
      assert.equal((await fetch(`${base}/readyz`)).status, 200);
      assert.equal((await fetch(`${base}/metrics`, { method: 'POST' })).status, 405);
      assert.equal((await fetch(`${base}/`)).status, 404);
    } finally {
      await listener.close();
    }
  });

  it('rejects with EADDRINUSE when the port is taken', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      await assert.rejects(
        startMetricsListener({
          listen: `127.0.0.1:${port}`,
          registry: new Registry(),
          notReadyReasons: () => [],
          log: createSilentLogger(),
        }),
        { code: 'EADDRINUSE' },
      );
    } finally {
      blocker.close();
    }
  });
});
