/** JSON Merge Patch, IoT Hub twin topics and document rules (common/merge-patch.ts, common/wire/twin-protocol.ts). */
import t from 'tap';
import { diffPatch, jsonDepth, jsonEqual, mergePatch } from '../../common/merge-patch.js';
import { checkTwinDocument, parseTwinTopic, twinKey, twinTopics } from '../../common/wire/twin-protocol.js';

t.test('merge patch follows RFC 7386', async (t) => {
  // The RFC's own example (section 3).
  const target = {
    title: 'Goodbye!',
    author: { givenName: 'John', familyName: 'Doe' },
    tags: ['example', 'sample'],
    content: 'This will be unchanged',
  };
  const patch = { title: 'Hello!', phoneNumber: '+01-123-456-7890', author: { familyName: null }, tags: ['example'] };
  t.same(mergePatch(target, patch), {
    title: 'Hello!',
    author: { givenName: 'John' },
    tags: ['example'],
    content: 'This will be unchanged',
    phoneNumber: '+01-123-456-7890',
  });
  t.equal(target.author.familyName, 'Doe', 'the target is not modified');
  t.same(mergePatch({ a: 1 }, 'x'), 'x', 'a non-object patch replaces');
  t.same(mergePatch('x', { a: { b: null, c: 1 } }), { a: { c: 1 } }, 'a non-object target starts empty');
});

t.test('diffPatch is the smallest patch from one document to another', async (t) => {
  const cases: [Record<string, unknown>, Record<string, unknown>][] = [
    [{}, {}],
    [{ a: 1 }, { a: 1 }],
    [
      { a: 1, b: { c: 2, d: 3 } },
      { a: 2, b: { c: 2 } },
    ],
    [{ a: [1, 2] }, { a: [1, 2, 3], e: { f: { g: 1 } } }],
    [{ a: { b: 1 } }, { a: 5 }],
    [{ a: 5 }, { a: { b: 1 } }],
  ];
  for (const [from, to] of cases) {
    const p = diffPatch(from, to);
    t.same(mergePatch(from, p), to, `${JSON.stringify(from)} → ${JSON.stringify(to)}`);
  }
  t.same(diffPatch({ a: 1, b: { c: 2, d: 3 } }, { a: 1, b: { c: 2 } }), { b: { d: null } }, 'only what changed, null for removals');
  t.same(diffPatch({ a: 1 }, { a: 1 }), {}, 'equal documents give an empty patch');
});

t.test('jsonEqual and jsonDepth', async (t) => {
  t.ok(jsonEqual({ a: [1, { b: 2 }], c: 'x' }, { c: 'x', a: [1, { b: 2 }] }), 'key order does not matter');
  t.notOk(jsonEqual({ a: [1, 2] }, { a: [2, 1] }), 'array order does');
  t.notOk(jsonEqual({ a: 1 }, { a: 1, b: undefined }));
  t.equal(jsonDepth(1), 0);
  t.equal(jsonDepth({}), 1);
  t.equal(jsonDepth({ a: { b: [1] } }), 3);
});

t.test('twin topics parse and build as IoT Hub spells them', async (t) => {
  t.same(parseTwinTopic(twinTopics.get('7')), { kind: 'get', rid: '7' });
  t.same(parseTwinTopic('$iothub/twin/get/?$rid=8'), { kind: 'get', rid: '8' }, 'method case-insensitive');
  t.same(parseTwinTopic(twinTopics.patchReported('9')), { kind: 'reported', rid: '9' });
  t.same(parseTwinTopic('$iothub/twin/PATCH/properties/reported/?$rid=1&$version=3'), { kind: 'reported', rid: '1' });
  t.same(parseTwinTopic(twinTopics.response(204, 'ab', 12)), { kind: 'response', status: 204, rid: 'ab', version: 12 });
  t.equal(twinTopics.response(200, 'x'), '$iothub/twin/res/200/?$rid=x');
  t.same(parseTwinTopic(twinTopics.desiredPatch(5)), { kind: 'desired', version: 5 });
  t.same(parseTwinTopic('$iothub/twin/GET/'), { kind: 'get', rid: undefined }, 'no $rid');
  t.equal(parseTwinTopic('$iothub/twin/PATCH/properties/other/?$rid=1').kind, 'unknown');
  t.equal(parseTwinTopic('$iothub/methods/POST/x/?$rid=1').kind, 'unknown');
});

t.test('twin documents follow IoT Hub rules', async (t) => {
  t.doesNotThrow(() => checkTwinDocument({ a: { b: [1, { c: 'x' }] }, d: null }, 1024));
  const bad: [unknown, string][] = [
    [[1], 'EDGETWIN_ERR_BAD_PAYLOAD'],
    ['x', 'EDGETWIN_ERR_BAD_PAYLOAD'],
    [{ 'a.b': 1 }, 'EDGETWIN_ERR_BAD_PAYLOAD'],
    [{ a: { $b: 1 } }, 'EDGETWIN_ERR_BAD_PAYLOAD'],
    [{ 'a b': 1 }, 'EDGETWIN_ERR_BAD_PAYLOAD'],
    [{ '': 1 }, 'EDGETWIN_ERR_BAD_PAYLOAD'],
    [{ a: 'x'.repeat(2000) }, 'EDGETWIN_ERR_PAYLOAD_TOO_LARGE'],
  ];
  for (const [doc, code] of bad) t.throws(() => checkTwinDocument(doc, 1024), { code }, JSON.stringify(doc).slice(0, 40));
  let deep: Record<string, unknown> = { v: 1 };
  for (let i = 0; i < 10; i++) deep = { n: deep };
  t.throws(() => checkTwinDocument(deep, 4096), { code: 'EDGETWIN_ERR_LIMIT_EXCEEDED' }, 'deeper than 10 levels');
  t.equal(twinKey('modbus:plc 1.a$'), 'modbus:plc_1_a_', 'free-text keys are made legal');
  t.equal(twinKey(''), '_');
});

t.test('twin config keys are checked at start-up and named when wrong', async (t) => {
  const { loadCollectorConfig } = await import('../../collector/config.js');
  const { loadAgentConfig } = await import('../../agent/config.js');
  t.equal(loadCollectorConfig(undefined, {}, {}).twin.desiredPollMs, 2000, 'collector default');
  t.equal(loadAgentConfig(undefined, {}, {}).twin.reportIntervalMs, 60_000, 'agent default');
  t.throws(() => loadCollectorConfig(undefined, { twin: { desiredPollMs: 1 } }, {}), {
    code: 'EDGETWIN_ERR_CONFIG',
    message: /"twin\.desiredPollMs"/,
  });
  t.throws(() => loadCollectorConfig(undefined, { twin: { cloudUrl: 'ftp://x' } }, {}), {
    code: 'EDGETWIN_ERR_CONFIG',
    message: /"twin\.cloudUrl"/,
  });
  t.throws(() => loadCollectorConfig(undefined, { twin: { pollMs: 5 } }, {}), {
    code: 'EDGETWIN_ERR_CONFIG',
    message: /unknown key "twin\.pollMs"/,
  });
  t.throws(() => loadAgentConfig(undefined, { twin: { reportIntervalMs: 5 } }, {}), {
    code: 'EDGETWIN_ERR_CONFIG',
    message: /"twin\.reportIntervalMs"/,
  });
});
