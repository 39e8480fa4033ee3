// rqlite-js (npm), unmodified: the data API and the backup API against real raftlited nodes.
// Run by ../run.sh through ../cluster.py, which starts the nodes and passes their URLs:
// RAFTLITE_SINGLE (one node), RAFTLITE_CLUSTER (three, leader first), RAFTLITE_FRESH (empty).
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { DataApiClient, BackupApiClient, StatusApiClient } = require('rqlite-js')

const SINGLE = process.env.RAFTLITE_SINGLE
const CLUSTER = (process.env.RAFTLITE_CLUSTER || '').split(',').filter(Boolean)
const FRESH = process.env.RAFTLITE_FRESH
if (!SINGLE || CLUSTER.length !== 3 || !FRESH) {
  throw new Error('run through tests/clients/run.sh (cluster.py sets RAFTLITE_* URLs)')
}
const [LEADER, ...FOLLOWERS] = CLUSTER

// No retries: a failure must show, not be hidden behind another host.
const clientOptions = { retries: 0 }

async function readAll (stream) {
  const chunks = []
  for await (const chunk of stream) chunks.push(chunk)
  return Buffer.concat(chunks)
}

function assertNoError (results) {
  assert.equal(results.hasError(), false, JSON.stringify(results.getFirstError()))
}

test('data API: execute and query, with parameters', async () => {
  const db = new DataApiClient(SINGLE, clientOptions)
  let r = await db.execute('CREATE TABLE js_foo (id INTEGER PRIMARY KEY, name TEXT, score REAL)')
  assertNoError(r)

  r = await db.execute([
    ['INSERT INTO js_foo(name, score) VALUES(?, ?)', 'fiona', 1.5],
    ['INSERT INTO js_foo(name, score) VALUES(:name, :score)', { name: 'declan', score: 2 }]
  ], { transaction: true })
  assertNoError(r)
  assert.equal(r.get(0).getLastInsertId(), 1)
  assert.equal(r.get(1).getLastInsertId(), 2)
  assert.equal(r.get(1).getRowsAffected(), 1)

  r = await db.query('SELECT id, name, score FROM js_foo ORDER BY id')
  assertNoError(r)
  assert.deepEqual(r.toArray(), [
    { id: 1, name: 'fiona', score: 1.5 },
    { id: 2, name: 'declan', score: 2 }
  ])
  assert.equal(r.get(1).get('name'), 'declan')

  // Parameterised queries go as POST JSON.
  r = await db.query([['SELECT name FROM js_foo WHERE score > ?', 1.9]], { level: 'strong' })
  assertNoError(r)
  assert.deepEqual(r.toArray(), [{ name: 'declan' }])

  r = await db.execute('UPDATE js_foo SET score = score + 1')
  assertNoError(r)
  assert.equal(r.get(0).getRowsAffected(), 2)

  // The raw HTTP answer.
  const raw = await db.query('SELECT count(*) AS n FROM js_foo', { raw: true })
  assert.equal(raw.status, 200)
  assert.deepEqual(raw.body.results[0].columns, ['n'])
  assert.deepEqual(raw.body.results[0].values, [[2]])

  // SQL errors are results, not HTTP failures.
  r = await db.query('SELECT * FROM js_missing')
  assert.equal(r.hasError(), true)
  assert.match(r.getFirstError().toString(), /no such table: js_missing/)
  r = await db.execute('INSERT INTO js_missing VALUES(1)')
  assert.equal(r.hasError(), true)
})

test('data API through a follower: writes and reads reach the leader', async () => {
  // Only the follower is known; it forwards every leader request (execute, default-level
  // query) to the leader, as rqlite does when the client does not ask for `redirect`.
  const db = new DataApiClient(FOLLOWERS[0], clientOptions)
  let r = await db.execute('CREATE TABLE js_cluster (id INTEGER PRIMARY KEY, v TEXT)')
  assertNoError(r)
  r = await db.execute([['INSERT INTO js_cluster(v) VALUES(?)', 'a'],
    ['INSERT INTO js_cluster(v) VALUES(?)', 'b']])
  assertNoError(r)
  r = await db.query('SELECT v FROM js_cluster ORDER BY id', { level: 'strong' })
  assertNoError(r)
  assert.deepEqual(r.toArray(), [{ v: 'a' }, { v: 'b' }])

  // Several hosts, the leader last: the client's host rotation works with any of them.
  const all = new DataApiClient([FOLLOWERS[1], FOLLOWERS[0], LEADER], clientOptions)
  r = await all.query('SELECT count(*) AS n FROM js_cluster', { level: 'weak' })
  assertNoError(r)
  assert.equal(r.get(0).get('n'), 2)
})

test('backup API: SQLite file and SQL text from the leader, load into a fresh node', async () => {
  const db = new DataApiClient(LEADER, clientOptions)
  assertNoError(await db.execute([
    'CREATE TABLE js_backup (id INTEGER PRIMARY KEY, t TEXT)',
    "INSERT INTO js_backup(t) VALUES('one')",
    "INSERT INTO js_backup(t) VALUES('it''s two')"
  ]))

  // The client is given a follower first: the follower fetches the backup from the leader.
  const backup = new BackupApiClient([FOLLOWERS[0], LEADER], clientOptions)
  const file = await readAll(await backup.backup())
  assert.equal(file.subarray(0, 16).toString('latin1'), 'SQLite format 3\u0000')

  const sql = (await readAll(await backup.backup('sql'))).toString('utf8')
  assert.match(sql, /^PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n/)
  assert.match(sql, /CREATE TABLE js_backup/)
  assert.match(sql, /^INSERT INTO "?js_backup"? VALUES\(2,'it''s two'\);$/m)
  assert.match(sql, /COMMIT;\n$/)

  // Restore the SQL text into the fresh node with the client's own load call.
  const fresh = new BackupApiClient(FRESH, clientOptions)
  const loaded = JSON.parse((await readAll(await fresh.load(sql))).toString('utf8'))
  assert.equal(loaded.error, undefined, JSON.stringify(loaded))
  const freshDb = new DataApiClient(FRESH, clientOptions)
  let r = await freshDb.query('SELECT id, t FROM js_backup ORDER BY id')
  assertNoError(r)
  assert.deepEqual(r.toArray(), [{ id: 1, t: 'one' }, { id: 2, t: "it's two" }])

  // And the SQLite file, which replaces the whole database.
  await readAll(await fresh.load(file, 'dump'))
  r = await freshDb.query('SELECT count(*) AS n FROM js_backup')
  assertNoError(r)
  assert.equal(r.get(0).get('n'), 2)
})

test('status API and level=none reads across hosts', async () => {
  // status() sends its options as a stray `q[useLeader]` parameter, which must be ignored.
  const status = new StatusApiClient([FOLLOWERS[0], LEADER], clientOptions)
  const answer = await status.status()
  assert.equal(answer.status, 200)
  assert.equal(typeof answer.body.store, 'object')
  const all = await status.statusAllHosts()
  assert.deepEqual(all.map((a) => a.response.status), [200, 200])

  // level=none reads rotate over the hosts; each node answers from its own copy.
  const db = new DataApiClient(FOLLOWERS, clientOptions)
  for (let i = 0; i < 4; i++) {
    const r = await db.query('SELECT 1 AS one, x\'00ff\' AS blob', { level: 'none' })
    assertNoError(r)
    assert.deepEqual(r.toArray(), [{ one: 1, blob: 'AP8=' }])
  }
})
