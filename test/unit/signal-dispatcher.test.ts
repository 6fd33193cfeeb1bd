import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SignalReport, SignalRequest, SyncResponse } from '../../common/contract';
import { createSilentLogger } from '../../common/log';
import type { AgentSession } from '../../server/fanout-hub';
import { SignalDispatcher, type SignalSender } from '../../server/signal-dispatcher';

const TARGET = { service: 'iklimco_nginx', signal: 'SIGHUP', bundle: 'web', version: 3 };

/** Stands in for the fan-out hub: a set of live sessions that record what was sent on them. */
class RecordingSender implements SignalSender {
  readonly sessions = new Map<string, AgentSession>();
  readonly sent: Array<{ nodeId: string; request: SignalRequest }> = [];

  connect(nodeId: string): AgentSession {
    const session: AgentSession = { nodeId, peer: `peer-${nodeId}`, send: () => undefined };
    this.sessions.set(nodeId, session);
    return session;
  }

  sendToNode(nodeId: string, message: SyncResponse): AgentSession | undefined {
    const session = this.sessions.get(nodeId);
    if (session && message.message?.$case === 'signal') {
      this.sent.push({ nodeId, request: message.message.value });
    }
    return session;
  }

  requestFor(nodeId: string): SignalRequest {
    const found = this.sent.find((entry) => entry.nodeId === nodeId);
    assert.ok(found, `nothing sent to ${nodeId}`);
    return found.request;
  }
}

function okReport(requestId: string, ...names: string[]): SignalReport {
  const containers = names.map((name, index) => ({
    containerId: `id-${index}`,
    containerName: name,
    taskId: `task-${index}`,
  }));
  return { requestId, ok: true, containers, error: undefined };
}

describe('SignalDispatcher', () => {
  it('sends one request per node and resolves each with its matched report', async () => {
    const sender = new RecordingSender();
    const a = sender.connect('node-a');
    const b = sender.connect('node-b');
    const dispatcher = new SignalDispatcher(sender, createSilentLogger());

    const nodeIds = ['node-a', 'node-b', 'node-a'];
    const done = dispatcher.signalNodes(nodeIds, { ...TARGET, timeoutMs: 5_000 });
    const requestA = sender.requestFor('node-a');
    const requestB = sender.requestFor('node-b');
    dispatcher.handleReport(b, {
      requestId: requestB.requestId,
      ok: false,
      containers: [],
      error: { code: 'DOCKER_UNAVAILABLE', message: 'mount the socket', path: '' },
    });
    const names = ['iklimco_nginx.1.abc', 'iklimco_nginx.2.def'];
    dispatcher.handleReport(a, okReport(requestA.requestId, ...names));

    const error = 'DOCKER_UNAVAILABLE: mount the socket';
    assert.deepEqual(await done, [
      { nodeId: 'node-a', ok: true, containers: names },
      { nodeId: 'node-b', ok: false, containers: [], error },
    ]);
    assert.equal(sender.sent.length, 2);
    assert.notEqual(requestA.requestId, requestB.requestId);
    assert.deepEqual({ ...requestA, requestId: '' }, { ...TARGET, requestId: '' });
  });

  it('fails a node that is not connected at once, without waiting for the timeout', async () => {
    const dispatcher = new SignalDispatcher(new RecordingSender(), createSilentLogger());
    const startedAt = Date.now();

    const target = { ...TARGET, timeoutMs: 60_000 };
    const [outcome] = await dispatcher.signalNodes(['node-gone'], target);

    assert.equal(outcome?.ok, false);
    assert.match(outcome?.error ?? '', /not connected.*iklimco_nginx/);
    assert.ok(Date.now() - startedAt < 1_000);
  });

  it('fails a node that does not answer in time, and ignores its late report', async () => {
    const sender = new RecordingSender();
    const session = sender.connect('node-slow');
    const dispatcher = new SignalDispatcher(sender, createSilentLogger());
    const startedAt = Date.now();

    const [outcome] = await dispatcher.signalNodes(['node-slow'], { ...TARGET, timeoutMs: 80 });
    const waitedMs = Date.now() - startedAt;
    dispatcher.handleReport(session, okReport(sender.requestFor('node-slow').requestId, 'late'));

    assert.deepEqual(outcome, {
      nodeId: 'node-slow',
      ok: false,
      containers: [],
      error: 'no signal report from the node within 80 ms',
    });
    assert.ok(waitedMs >= 75 && waitedMs < 1_000, `waited ${waitedMs} ms`);
  });

  it('fails a node whose session closes while it is waited for', async () => {
    const sender = new RecordingSender();
    const lost = sender.connect('node-a');
    const steady = sender.connect('node-b');
    const dispatcher = new SignalDispatcher(sender, createSilentLogger());

    const done = dispatcher.signalNodes(['node-a', 'node-b'], { ...TARGET, timeoutMs: 5_000 });
    dispatcher.sessionClosed(lost);
    dispatcher.handleReport(steady, okReport(sender.requestFor('node-b').requestId, 'c1'));
    const [outcomeA, outcomeB] = await done;

    assert.equal(outcomeA?.ok, false);
    assert.match(outcomeA?.error ?? '', /disconnected/);
    assert.equal(outcomeB?.ok, true);
  });

  it('accepts a report only from the session the request went out on', async () => {
    const sender = new RecordingSender();
    const first = sender.connect('node-a');
    const dispatcher = new SignalDispatcher(sender, createSilentLogger());

    const done = dispatcher.signalNodes(['node-a'], { ...TARGET, timeoutMs: 5_000 });
    const { requestId } = sender.requestFor('node-a');
    const impostor: AgentSession = { ...first };
    dispatcher.handleReport(impostor, okReport(requestId, 'wrong'));
    dispatcher.handleReport(first, okReport('unknown-request', 'stray'));
    // An old session of a reconnecting node ending does not touch the request on the new one.
    dispatcher.sessionClosed(impostor);
    dispatcher.handleReport(first, okReport(requestId, 'right'));

    assert.deepEqual(await done, [{ nodeId: 'node-a', ok: true, containers: ['right'] }]);
  });
});
