import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_DOCKER_SOCKET, parseAgentConfig } from '../../agent/config';

const REQUIRED = ['--server', 'manager:7443', '--dir', '/opt/ssl', '--node-id', 'n1', '--token-file', '/run/secrets/t'];

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
    assert.throws(() => parseAgentConfig(BASE, {}), /no credential: pass --token-file \(or CERTSYNC_TOKEN_FILE\) or --cert-file\/--key-file/);
    assert.deepEqual(parseAgentConfig([...BASE, '--insecure'], {}).transport, { insecure: true });
    assert.deepEqual(parseAgentConfig(BASE, { CERTSYNC_INSECURE: '1' }).transport, { insecure: true });
  });

  it('reads TLS settings from flags and environment, flags first', () => {
    const env = { CERTSYNC_TOKEN_FILE: '/run/secrets/env-token', CERTSYNC_CA_FILE: '/run/secrets/ca.pem' };
    const config = parseAgentConfig([...BASE, '--token-file', '/run/secrets/flag-token', '--server-name', 'certsync'], env);
    assert.deepEqual(config.transport, { caFile: '/run/secrets/ca.pem', tokenFile: '/run/secrets/flag-token', serverName: 'certsync' });
    assert.equal(config.maxMessageBytes, 4 * 1024 * 1024);
  });

  it('refuses a certificate without its key and a bad message limit', () => {
    assert.throws(() => parseAgentConfig([...BASE, '--cert-file', '/c.pem'], {}), /needs both --cert-file and --key-file/);
    assert.throws(() => parseAgentConfig([...BASE, '--insecure', '--max-message-bytes', '12'], {}), /--max-message-bytes "12"/);
  });
});
