import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from './log';

/** A running metrics listener. */
export interface MetricsListener {
  /** The bound port (useful when listening on port 0). */
  readonly port: number;
  close(): Promise<void>;
}

export interface MetricsListenerOptions {
  /** `HOST:PORT`; `[::]:PORT` for IPv6. */
  listen: string;
  registry: Registry;
  /** The reasons the process is not ready yet; empty when ready (`/readyz` answers 200). */
  notReadyReasons: () => string[];
  log: Logger;
}

/**
 * Serves `/metrics` (Prometheus text format), `/healthz` (the process answers) and `/readyz`
 * (200 when ready, 503 with the reasons otherwise) over plain HTTP without authentication. Only
 * counts, versions, node IDs and dates are exposed; nothing here can reach key material.
 */
export async function startMetricsListener(
  options: MetricsListenerOptions,
): Promise<MetricsListener> {
  const { host, port } = splitHostPort(options.listen);
  const server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      options.registry.metrics().then(
        (text) =>
          response.writeHead(200, { 'content-type': options.registry.contentType }).end(text),
        (error: unknown) => {
          options.log.error({ err: error }, 'Metrics not collected');
          response
            .writeHead(500, { 'content-type': 'text/plain' })
            .end('metrics not collected; see the log\n');
        },
      );
    } else if (path === '/healthz') {
      response.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const reasons = options.notReadyReasons();
      const status = reasons.length === 0 ? 200 : 503;
      response
        .writeHead(status, { 'content-type': 'text/plain' })
        .end(reasons.length === 0 ? 'ready\n' : `${reasons.join('\n')}\n`);
    } else {
      response
        .writeHead(404, { 'content-type': 'text/plain' })
        .end('not found: try /metrics, /healthz or /readyz\n');
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  options.log.info(
    { listen: options.listen, port: bound, paths: ['/metrics', '/healthz', '/readyz'] },
    'Metrics listener started',
  );
  return { port: bound, close: () => closeServer(server) };
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Splits `HOST:PORT` / `[v6]:PORT` (validated by the configs already). */
function splitHostPort(address: string): { host: string; port: number } {
  const index = address.lastIndexOf(':');
  const host = address.slice(0, index).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(address.slice(index + 1)) };
}
