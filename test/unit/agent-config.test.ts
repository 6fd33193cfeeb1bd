import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_DOCKER_SOCKET, parseAgentConfig } from '../../agent/config';

const REQUIRED = [
  '--server',
  'manager:7443',
  '--dir',
  '/opt/ssl',
  '--node-id',
  'n1',
  '--token-file',
  '/run/secrets/t',
];

describe('agent --docker-socket', () => {
  it('defaults to the standard socket, takes the env, and lets the flag win', () => {
    const env = { CERTSYNC_DOCKER_SOCKET: '/mnt/docker.sock' };

    assert.equal(parseAgentConfig(REQUIRED, {}).dockerSocketPath, DEFAULT_DOCKER_SOCKET);
    assert.equal(parseAgentConfig(REQUIRED, env).dockerSocketPath, '/mnt/docker.sock');
    const flagged = parseAgentConfig([...REQUIRED, '--docker-socket', '/run/d.sock'], env);
    assert.equal(flagged.dockerSocketPath, '/run/d.sock');
  });
});

describe('agent transport flags', () => {
  const BASE = ['--server', 'manager:7443', '--dir', '/opt/ssl', '--node-id', 'n1'];

  it('needs a credential unless --insecure, and names the flags', () => {
    assert.throws(
      () => parseAgentConfig(BASE, {}),
      /no credential: pass --token-file \(or CERTSYNC_TOKEN_FILE\) or --cert-file\/--key-file/,
    );
    assert.deepEqual(parseAgentConfig([...BASE, '--insecure'], {}).transport, { insecure: true });
    assert.deepEqual(parseAgentConfig(BASE, { CERTSYNC_INSECURE: '1' }).transport, {
      insecure: true,
    });
  });

  it('reads TLS settings from flags and environment, flags first', () => {
    const env = {
      CERTSYNC_TOKEN_FILE: '/run/secrets/env-token',
      CERTSYNC_CA_FILE: '/run/secrets/ca.pem',
    };
    const config = parseAgentConfig(
      [...BASE, '--token-file', '/run/secrets/flag-token', '--server-name', 'certsync'],
      env,
    );
    assert.deepEqual(config.transport, {
      caFile: '/run/secrets/ca.pem',
      tokenFile: '/run/secrets/flag-token',
      serverName: 'certsync',
    });
    assert.equal(config.maxMessageBytes, 4 * 1024 * 1024);
  });

  it('refuses a certificate without its key and a bad message limit', () => {
    assert.throws(
      () => parseAgentConfig([...BASE, '--cert-file', '/c.pem'], {}),
      /needs both --cert-file and --key-file/,
    );
    assert.throws(
      () => parseAgentConfig([...BASE, '--insecure', '--max-message-bytes', '12'], {}),
      /--max-message-bytes "12"/,
    );
  });
});

describe('agent --metrics-listen and --log-format', () => {
  it('has no metrics listener by default, takes the env, and lets the flag win', () => {
    assert.equal(parseAgentConfig(REQUIRED, {}).metricsListen, undefined);
    assert.equal(
      parseAgentConfig(REQUIRED, { CERTSYNC_METRICS_LISTEN: '0.0.0.0:9465' }).metricsListen,
      '0.0.0.0:9465',
    );
    const flagged = parseAgentConfig([...REQUIRED, '--metrics-listen', '127.0.0.1:9466'], {
      CERTSYNC_METRICS_LISTEN: '0.0.0.0:9465',
    });
    assert.equal(flagged.metricsListen, '127.0.0.1:9466');
    assert.throws(
      () => parseAgentConfig([...REQUIRED, '--metrics-listen', '9466'], {}),
      /--metrics-listen "9466" is not HOST:PORT/,
    );
  });

  it('takes json or pretty from the flag or CERTSYNC_LOG_FORMAT and refuses anything else', () => {
    assert.equal(parseAgentConfig(REQUIRED, {}).logFormat, undefined);
    assert.equal(parseAgentConfig(REQUIRED, { CERTSYNC_LOG_FORMAT: 'pretty' }).logFormat, 'pretty');
    assert.equal(
      parseAgentConfig([...REQUIRED, '--log-format', 'json'], { CERTSYNC_LOG_FORMAT: 'pretty' })
        .logFormat,
      'json',
    );
    assert.throws(
      () => parseAgentConfig([...REQUIRED, '--log-format', 'xml'], {}),
      /--log-format "xml" is not json or pretty/,
    );
  });
});
