// The @medplum/core FHIRcast client, unmodified, through every step an app takes in a session:
// token, subscribe, receive, publish, get current context, content sharing, unsubscribe.
//
// Configured by the environment (LOCKSTEP_ORIGIN, LOCKSTEP_TOPIC, LOCKSTEP_CLIENT_ID,
// LOCKSTEP_CLIENT_SECRET). Prints one JSON line per step it passed, and exits non-zero with the
// reason on the first step that fails.

import { MedplumClient } from '@medplum/core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const origin = env('LOCKSTEP_ORIGIN');
const topic = env('LOCKSTEP_TOPIC');
const WAIT_MS = 5000;

const passed = (step, details = {}) => console.log(JSON.stringify({ step, ...details }));

function expect(condition, what) {
  if (!condition) throw new Error(`expected ${what}`);
}

// Notifications as the connection hands them over, in order: `next(event, id)` resolves with
// the next `event` whose first context resource has `id`, failing on any other notification.
function inbox(connection) {
  const queue = [];
  let waiting;
  connection.addEventListener('message', ({ payload }) => {
    queue.push(payload);
    waiting?.();
  });
  return (event, id) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${event} of ${id} within ${WAIT_MS} ms`)), WAIT_MS);
      const look = () => {
        const payload = queue.shift();
        if (!payload) return;
        waiting = undefined;
        clearTimeout(timer);
        const name = payload.event['hub.event'];
        const first = payload.event.context[0];
        const got = first?.resource?.id ?? first?.reference?.reference?.split('/')[1];
        if (name === event && got === id) resolve(payload);
        else reject(new Error(`expected ${event} of ${id}, got ${name} of ${got}`));
      };
      waiting = look;
      look();
    });
}

function once(connection, type) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${type} within ${WAIT_MS} ms`)), WAIT_MS);
    connection.addEventListener(type, () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

const patient = {
  resourceType: 'Patient',
  id: 'medplum-patient',
  identifier: [{ system: 'urn:oid:1.2.36.146.595.217.0.1', value: 'MRN-7001' }],
};
const report = {
  resourceType: 'DiagnosticReport',
  id: 'medplum-report',
  identifier: [{ system: 'urn:oid:1.2.36.146.595.217.0.2', value: 'ACC-7001' }],
  status: 'preliminary',
  subject: { reference: 'Patient/medplum-patient' },
};

const medplum = new MedplumClient({
  baseUrl: `${origin}/`,
  tokenUrl: `${origin}/auth/token`,
  fhircastHubUrl: `${origin}/fhircast`,
});

// An uncaught error would print the library's minified source line; the reason is enough.
try {
  await medplum.startClientLogin(env('LOCKSTEP_CLIENT_ID'), env('LOCKSTEP_CLIENT_SECRET'));
  expect(typeof medplum.getAccessToken() === 'string' && medplum.getAccessToken().length > 0, 'an access token');
  passed('token');

  // A fresh session: whatever arrives below is live, not a replay.
  const before = await medplum.fhircastGetContext(topic);
  expect(before['context.type'] === '', `an empty session to start with, got ${before['context.type']}`);

  const events = [
    'Patient-open',
    'Patient-close',
    'DiagnosticReport-open',
    'DiagnosticReport-update',
    'DiagnosticReport-close',
  ];
  const subscription = await medplum.fhircastSubscribe(topic, events);
  expect(subscription.endpoint?.startsWith('ws://'), `a ws:// endpoint, got ${subscription.endpoint}`);
  const connection = medplum.fhircastConnect(subscription);
  const next = inbox(connection);
  await once(connection, 'connect');
  passed('subscribe', { endpoint: subscription.endpoint });

  await medplum.fhircastPublish(topic, 'Patient-open', [{ key: 'patient', resource: patient }]);
  passed('publish');
  const opened = await next('Patient-open', patient.id);
  passed('receive', { id: opened.id });

  const current = await medplum.fhircastGetContext(topic);
  expect(current['context.type'] === 'Patient', `context.type Patient, got ${current['context.type']}`);
  expect(current.context.some((c) => c.key === 'patient' && c.resource.id === patient.id), 'the patient in context');
  passed('current context', { type: current['context.type'] });

  await medplum.fhircastPublish(topic, 'DiagnosticReport-open', [
    { key: 'report', resource: report },
    { key: 'patient', resource: patient },
  ]);
  const reportOpened = await next('DiagnosticReport-open', report.id);
  const versionId = reportOpened.event['context.versionId'];
  expect(typeof versionId === 'string' && versionId.length > 0, 'a context.versionId on DiagnosticReport-open');
  const observation = {
    resourceType: 'Observation',
    id: 'medplum-finding',
    status: 'preliminary',
    code: { text: 'Finding' },
  };
  await medplum.fhircastPublish(
    topic,
    'DiagnosticReport-update',
    [
      { key: 'report', reference: { reference: `DiagnosticReport/${report.id}` } },
      { key: 'patient', reference: { reference: `Patient/${patient.id}` } },
      {
        key: 'updates',
        resource: {
          resourceType: 'Bundle',
          id: 'medplum-updates',
          type: 'transaction',
          entry: [{ request: { method: 'PUT' }, resource: observation }],
        },
      },
    ],
    versionId
  );
  const updated = await next('DiagnosticReport-update', report.id);
  expect(updated.event['context.priorVersionId'] === versionId, 'the update to name the version it follows');
  const shared = await medplum.fhircastGetContext(topic);
  const content = shared.context.find((c) => c.key === 'content');
  expect(
    content?.resource?.entry?.some((e) => e.resource?.id === observation.id),
    `the shared observation in the current context, got ${JSON.stringify(shared)}`
  );
  passed('content sharing', { versionId: shared['context.versionId'] });

  await medplum.fhircastPublish(topic, 'DiagnosticReport-close', [
    { key: 'report', resource: report },
    { key: 'patient', resource: patient },
  ]);
  await next('DiagnosticReport-close', report.id);
  await medplum.fhircastPublish(topic, 'Patient-close', [{ key: 'patient', resource: patient }]);
  await next('Patient-close', patient.id);
  const closed = await medplum.fhircastGetContext(topic);
  expect(closed['context.type'] === '', `an empty context after the closes, got ${closed['context.type']}`);

  const gone = once(connection, 'disconnect');
  await medplum.fhircastUnsubscribe(subscription);
  await gone;
  passed('unsubscribe');
} catch (error) {
  console.error(`@medplum/core client failed: ${error.message}`);
  process.exit(1);
}
// The library keeps no handle open once unsubscribed; leave without waiting on one anyway.
process.exit(0);
