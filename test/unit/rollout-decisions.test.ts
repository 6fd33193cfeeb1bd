import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SwarmNode, SwarmTask } from '../../server/docker-client';
import { expectedSwarmNodeIds, swarmNodeVerdict } from '../../server/expected-nodes';
import { assessForceUpdate, runningTaskIds } from '../../server/force-update';
import { singleFileMountWarnings } from '../../server/reloader';
import {
  assessConvergence,
  newRollout,
  RolloutTransitionError,
  transitionRollout,
} from '../../server/rollout';

const T0 = new Date('2026-12-04T10:00:00Z');
const at = (ms: number) => new Date(T0.getTime() + ms);

function task(id: string, nodeId: string, state: string, desiredState = 'running'): SwarmTask {
  return { id, nodeId, state, desiredState, error: '', createdAt: '', addresses: [] };
}

function node(id: string, overrides: Partial<SwarmNode> = {}): SwarmNode {
  return { id, hostname: id, role: 'worker', state: 'ready', availability: 'active', ...overrides };
}

describe('assessConvergence', () => {
  it('converges only when every expected node confirmed', () => {
    assert.deepEqual(assessConvergence(['a', 'b'], new Set(['a', 'b', 'x']), T0, at(10), 1000), {
      kind: 'converged',
    });
    assert.deepEqual(assessConvergence(['a', 'b'], new Set(['a']), T0, at(10), 1000), {
      kind: 'waiting',
      missing: ['b'],
    });
  });

  it('stalls after the timeout and names the missing nodes', () => {
    const verdict = assessConvergence(['a', 'b', 'c'], new Set(['a']), T0, at(1000), 1000);
    assert.equal(verdict.kind, 'stalled');
    assert.ok(
      verdict.kind === 'stalled' &&
        verdict.reason.includes('b, c') &&
        verdict.reason.includes('2 of 3'),
    );
  });

  it('never converges on an empty expected set', () => {
    assert.equal(assessConvergence([], new Set(['a']), T0, at(10), 1000).kind, 'waiting');
    const stalled = assessConvergence([], new Set(), T0, at(5000), 1000);
    assert.ok(stalled.kind === 'stalled' && stalled.reason.includes('no expected node'));
  });
});

describe('transitionRollout', () => {
  it('records each allowed step in the timeline and refuses the rest', () => {
    const rollout = newRollout('web', 3, 'accepted', T0);
    transitionRollout(rollout, 'stalled', at(1), 'node b missing');
    assert.equal(rollout.reason, 'node b missing');
    transitionRollout(rollout, 'converged', at(2));
    transitionRollout(rollout, 'reloading', at(3));
    assert.throws(() => transitionRollout(rollout, 'distributing', at(4)), RolloutTransitionError);
    transitionRollout(rollout, 'done', at(5));
    assert.deepEqual(
      rollout.transitions.map((step) => `${step.from}>${step.to}`),
      ['distributing>stalled', 'stalled>converged', 'converged>reloading', 'reloading>done'],
    );
    assert.equal(rollout.reason, '');
    assert.throws(
      () => transitionRollout(newRollout('web', 4, 'accepted', T0), 'done', at(1)),
      RolloutTransitionError,
    );
  });
});

describe('assessForceUpdate', () => {
  const before = ['old1', 'old2'];

  it('does not take a stale "completed" with the old tasks for the end of this update', () => {
    const verdict = assessForceUpdate(
      { updateState: 'completed', updateMessage: '' },
      [task('old1', 'n1', 'running'), task('old2', 'n2', 'running')],
      before,
    );
    assert.equal(verdict.kind, 'waiting');
  });

  it('waits while new tasks are starting, then reports them', () => {
    const starting = [
      task('old1', 'n1', 'running', 'shutdown'),
      task('new1', 'n1', 'starting'),
      task('new2', 'n2', 'running'),
    ];
    assert.equal(
      assessForceUpdate({ updateState: 'updating', updateMessage: '' }, starting, before).kind,
      'waiting',
    );
    const finished = [
      task('old1', 'n1', 'shutdown', 'shutdown'),
      task('new1', 'n1', 'running'),
      task('new2', 'n2', 'running'),
    ];
    assert.deepEqual(
      assessForceUpdate({ updateState: 'completed', updateMessage: '' }, finished, before),
      {
        kind: 'done',
        tasksAfter: ['new1', 'new2'],
      },
    );
  });

  it('fails a paused or rolled-back update with Docker message attached', () => {
    const paused = assessForceUpdate(
      {
        updateState: 'paused',
        updateMessage: 'update paused due to failure or early termination of task x',
      },
      [],
      before,
    );
    assert.ok(
      paused.kind === 'failed' &&
        paused.reason.includes('paused') &&
        paused.reason.includes('early termination'),
    );
    assert.equal(
      assessForceUpdate(
        { updateState: 'rollback_completed', updateMessage: 'rollback completed' },
        [],
        before,
      ).kind,
      'failed',
    );
  });

  it('lists only tasks that are running and meant to be', () => {
    assert.deepEqual(
      runningTaskIds([
        task('b', 'n', 'running'),
        task('a', 'n', 'running'),
        task('c', 'n', 'running', 'shutdown'),
        task('d', 'n', 'failed'),
      ]),
      ['a', 'b'],
    );
  });
});

describe('swarm expected nodes', () => {
  const agentTasks = [
    task('t1', 'n1', 'running'),
    task('t2', 'n2', 'rejected'),
    task('t3', 'n3', 'running'),
    task('t4', 'n4', 'shutdown', 'shutdown'),
  ];

  it('expects ready, active nodes where the agent service is scheduled, even if its task failed', () => {
    const nodes = [
      node('n1'),
      node('n2'),
      node('n3', { availability: 'drain' }),
      node('n4'),
      node('n5', { state: 'down' }),
    ];
    assert.deepEqual(expectedSwarmNodeIds(nodes, agentTasks, 'certsync_agent'), ['n1', 'n2']);
  });

  it('says why a node is refused', () => {
    assert.match(
      swarmNodeVerdict(undefined, agentTasks, 'certsync_agent')!,
      /not a node of this swarm/,
    );
    assert.match(
      swarmNodeVerdict(node('n3', { availability: 'drain' }), agentTasks, 'certsync_agent')!,
      /"drain"/,
    );
    assert.match(
      swarmNodeVerdict(node('n5', { state: 'down' }), agentTasks, 'certsync_agent')!,
      /"down"/,
    );
    assert.match(
      swarmNodeVerdict(node('n4'), agentTasks, 'certsync_agent')!,
      /does not schedule the agent service "certsync_agent"/,
    );
    assert.equal(swarmNodeVerdict(node('n1'), agentTasks, 'certsync_agent'), undefined);
  });
});

describe('singleFileMountWarnings', () => {
  it('warns about a managed file bind-mounted on its own, not about its folder', () => {
    const warnings = singleFileMountWarnings(
      'vault',
      [
        {
          type: 'bind',
          source: '/opt/iklimco/ssl/STAR.iklim.co.full.crt',
          target: '/vault/tls/cert.pem',
        },
        { type: 'bind', source: '/opt/iklimco/ssl', target: '/vault/tls' },
        { type: 'volume', source: 'data', target: '/vault/data' },
      ],
      ['STAR.iklim.co.full.crt', 'STAR.iklim.co_key.pem'],
    );
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /single file \/opt\/iklimco\/ssl\/STAR\.iklim\.co\.full\.crt/);
  });
});
