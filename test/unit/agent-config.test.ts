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
