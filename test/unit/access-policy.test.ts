import { Metadata } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import type { PeerCertificate } from 'node:tls';
import { describe, it } from 'node:test';
import { authorizeCall, type AccessPolicy } from '../../server/access-policy';
import {
  PermissionDeniedError,
  roleOfCertificate,
  tokenDigest,
  UnauthenticatedError,
} from '../../server/caller-identity';

const AGENT_TOKEN = 'a'.repeat(64);
const ADMIN_TOKEN = 'b'.repeat(64);
const POLICY: AccessPolicy = {
  tokens: { agent: tokenDigest(AGENT_TOKEN), admin: tokenDigest(ADMIN_TOKEN) },
  openRoles: new Set(),
};
const SYNC = '/certsync.v1.AgentService/Sync';
const GET_STATUS = '/certsync.v1.AdminService/GetStatus';

function bearer(token: string): Metadata {
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  return metadata;
}

function certificateWithOu(ou: string | string[]): PeerCertificate {
  return { subject: { OU: ou, CN: 'x' } } as unknown as PeerCertificate;
}

describe('authorizeCall', () => {
  it('lets health and reflection through without any credential', () => {
    for (const path of [
      '/grpc.health.v1.Health/Check',
      '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo',
      '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo',
    ]) {
      assert.doesNotThrow(() => authorizeCall(POLICY, path, new Metadata(), {}));
    }
  });

  it('refuses a call without credentials as unauthenticated, and a service nobody may call', () => {
    assert.throws(() => authorizeCall(POLICY, SYNC, new Metadata(), {}), UnauthenticatedError);
    assert.throws(
      () => authorizeCall(POLICY, GET_STATUS, new Metadata(), {}),
      UnauthenticatedError,
    );
    assert.throws(
      () => authorizeCall(POLICY, '/other.Service/Call', bearer(ADMIN_TOKEN), {}),
      PermissionDeniedError,
    );
  });

  it('gives each token its own service only', () => {
    assert.doesNotThrow(() => authorizeCall(POLICY, SYNC, bearer(AGENT_TOKEN), {}));
    assert.doesNotThrow(() => authorizeCall(POLICY, GET_STATUS, bearer(ADMIN_TOKEN), {}));
    assert.throws(
      () => authorizeCall(POLICY, GET_STATUS, bearer(AGENT_TOKEN), {}),
      PermissionDeniedError,
    );
    assert.throws(
      () => authorizeCall(POLICY, SYNC, bearer(ADMIN_TOKEN), {}),
      PermissionDeniedError,
    );
  });

  it('refuses a wrong, truncated or malformed token, even next to a good certificate', () => {
    const admin = { sslPeerCertificate: certificateWithOu('certsync-admin') };
    assert.throws(
      () => authorizeCall(POLICY, GET_STATUS, bearer('c'.repeat(64)), admin),
      /bearer token is not accepted/,
    );
    assert.throws(
      () => authorizeCall(POLICY, GET_STATUS, bearer(ADMIN_TOKEN.slice(1)), {}),
      UnauthenticatedError,
    );
    const basic = new Metadata();
    basic.set('authorization', `Basic ${ADMIN_TOKEN}`);
    assert.throws(() => authorizeCall(POLICY, GET_STATUS, basic, {}), /must be "Bearer <token>"/);
  });

  it('takes the role from a verified client certificate OU', () => {
    assert.doesNotThrow(() =>
      authorizeCall(POLICY, SYNC, new Metadata(), {
        sslPeerCertificate: certificateWithOu('certsync-agent'),
      }),
    );
    assert.throws(
      () =>
        authorizeCall(POLICY, GET_STATUS, new Metadata(), {
          sslPeerCertificate: certificateWithOu('certsync-agent'),
        }),
      PermissionDeniedError,
    );
    assert.equal(
      roleOfCertificate(certificateWithOu(['certsync-agent', 'certsync-admin'])),
      undefined,
      'both OUs: neither role',
    );
    assert.equal(roleOfCertificate(certificateWithOu('ops')), undefined);
  });

  it('opens a role only when it has no credential at all (insecure mode)', () => {
    const policy: AccessPolicy = {
      tokens: { agent: tokenDigest(AGENT_TOKEN) },
      openRoles: new Set(['admin']),
    };
    assert.doesNotThrow(() => authorizeCall(policy, GET_STATUS, new Metadata(), {}));
    assert.throws(() => authorizeCall(policy, SYNC, new Metadata(), {}), UnauthenticatedError);
  });
});
