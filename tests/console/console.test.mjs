// Browser tests of the web console: Playwright (playwright-core) driving Debian's chromium,
// headless, against real raftlited nodes on free loopback ports.
//
// Environment (set by scripts/console-tests.sh):
//   RAFTLITED       the node binary
//   CHROMIUM        the browser binary (default /usr/bin/chromium)
//   SCREENSHOT_DIR  where the tab screenshots go (default: docs/console of the checkout)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = process.env.RAFTLITED || path.join(ROOT, "target/debug/raftlited");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = process.env.SCREENSHOT_DIR || path.join(ROOT, "docs/console");
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), "raftlite-console-"));
// The flags this offline machine needs (without the networking ones chromium stalls).
const CHROMIUM_FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const STEP_TIMEOUT = 20_000;

const nodes = [];
let context;

/** Starts a node in a fresh data directory, with extra flags; resolves with its base URL.
 * `readyHeaders` go with the readiness probe (a node with `-auth` may want credentials). */
function startNode(name, flags = [], readyHeaders = {}) {
  const dir = path.join(TMP, name);
  const child = spawn(BIN, [...flags, "-http-addr", "127.0.0.1:0", "-raft-addr", "127.0.0.1:0", dir], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, RUST_LOG: "info" },
  });
  const node = { child, dir, log: "" };
  nodes.push(node);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start:\n${node.log}`)), 30_000);
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      node.log += chunk;
      const m = /node HTTP API available at (http:\/\/[0-9.:]+)/.exec(node.log);
      if (m && !node.url) {
        node.url = m[1];
        clearTimeout(timer);
        waitReady(node.url, readyHeaders).then(() => resolve(node), reject);
      }
    });
    child.on("exit", (code) => reject(new Error(`${name} exited (${code}):\n${node.log}`)));
  });
}

async function waitReady(url, headers = {}) {
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch(url + "/readyz", { headers });
      if (r.ok) return;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("node not ready: " + url);
}

const basicAuth = (user, pass) => "Basic " + Buffer.from(user + ":" + pass, "utf8").toString("base64");

async function query(url, sql, headers = {}) {
  const r = await fetch(url + "/db/query?level=strong&q=" + encodeURIComponent(sql), { headers });
  return (await r.json()).results[0];
}

async function openConsole(url, tab = "query") {
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT);
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(url + "/", { waitUntil: "load" }); // `/` redirects to /console/
  assert.equal(new URL(page.url()).pathname, "/console/");
  await page.click("#tab-" + tab);
  page.consoleErrors = errors;
  return page;
}

/** Drops a file on the restore drop zone the way a user's drag-and-drop delivers it. */
async function dropFile(page, bytes, name) {
  const dt = await page.evaluateHandle(({ b64, name }) => {
    const raw = atob(b64);
    const buf = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) buf[i] = raw.charCodeAt(i);
    const dt = new DataTransfer();
    dt.items.add(new File([buf], name, { type: "application/octet-stream" }));
    return dt;
  }, { b64: Buffer.from(bytes).toString("base64"), name });
  await page.dispatchEvent("#drop", "dragenter", { dataTransfer: dt });
  await page.dispatchEvent("#drop", "dragover", { dataTransfer: dt });
  await page.dispatchEvent("#drop", "drop", { dataTransfer: dt });
}

function sqlite3(db, sql) {
  return execFileSync("sqlite3", [db, sql], { encoding: "utf8" }).trim();
}

const loadFiles = (dir) => fs.readdirSync(dir).filter((f) => f.startsWith("load-"));

let A; // the node most tests use
before(async () => {
  A = await startNode("a");
  context = await chromium.launchPersistentContext(path.join(TMP, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 960, height: 640 },
    acceptDownloads: true,
  });
});

after(async () => {
  if (context) await context.close();
  for (const n of nodes) n.child.kill("SIGTERM");
  fs.rmSync(TMP, { recursive: true, force: true });
});

test("query: statements run, results as tables, NULL and BLOB distinct, errors inline", async () => {
  const page = await openConsole(A.url, "query");
  await page.fill("#sql", [
    "CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT, photo BLOB);",
    "CREATE TABLE audit(msg TEXT); -- a trigger body holds semicolons: one statement",
    "CREATE TRIGGER people_audit AFTER INSERT ON people BEGIN",
    "  INSERT INTO audit VALUES ('added; ' || coalesce(new.name, 'nobody'));",
    "END;",
    "INSERT INTO people(name, photo) VALUES ('ada', x'cafe'), (NULL, NULL);",
    "CREATE INDEX people_name ON people(name);",
    "SELECT * FROM people ORDER BY id;",
    "SELECT * FROM no_such_table;",
  ].join("\n"));
  await page.press("#sql", "Control+Enter");
  await page.waitForSelector("#results .result:nth-child(7)");
  assert.equal(await page.locator("#results .result").count(), 7);
  const cells = await page.$$eval("#results .result:nth-child(6) td", (tds) => tds.map((t) => [t.className, t.textContent]));
  assert.deepEqual(cells[1], ["", "ada"]);
  assert.equal(cells[2][0], "blob");
  assert.match(cells[2][1], /^BLOB 2 bytes x'cafe'/);
  assert.deepEqual(cells[4], ["null", "NULL"]);
  assert.deepEqual(cells[5], ["null", "NULL"]);
  const err = await page.textContent("#results .result:nth-child(7) .stmt-error");
  assert.match(err, /no such table: no_such_table/);
  assert.match(await page.textContent("#query-status"), /7 statement\(s\), server/);
  assert.equal((await query(A.url, "SELECT count(*) FROM people")).values[0][0], 2);
  assert.deepEqual((await query(A.url, "SELECT msg FROM audit ORDER BY rowid")).values, [["added; ada"], ["added; nobody"]]);
  assert.deepEqual(page.consoleErrors, []);
  await page.close();
});

test("schema: a table created in Query shows with its columns, index and row count", async () => {
  const page = await openConsole(A.url, "query");
  await page.fill("#sql", "CREATE TABLE IF NOT EXISTS orders(id INTEGER PRIMARY KEY, total REAL NOT NULL); INSERT INTO orders(total) VALUES (9.5)");
  await page.click("#run");
  await page.waitForSelector("#results .result:nth-child(2)");
  await page.click("#tab-schema");
  const card = page.locator('.schema-table[data-table="orders"]');
  await card.waitFor();
  assert.match(await card.textContent(), /1 row\(s\)/);
  assert.match(await card.textContent(), /totalREALyes/);
  const people = page.locator('.schema-table[data-table="people"]');
  assert.match(await people.textContent(), /index people_name/);
  assert.match(await people.textContent(), /trigger people_audit/);
  assert.match(await people.textContent(), /2 row\(s\)/);
  // The node's internal state table is not shown.
  assert.equal(await page.locator('.schema-table[data-table="_raftlite_state"]').count(), 0);
  await page.close();
});

test("backup: the browser downloads a binary backup with progress; sqlite3 checks it", async () => {
  const page = await openConsole(A.url, "backup");
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#backup-start")]);
  const file = path.join(TMP, "backup.sqlite3");
  await download.saveAs(file);
  await page.waitForSelector("#backup-state.ok");
  assert.match(download.suggestedFilename(), /^raftlite-backup-\d+\.sqlite3$/);
  assert.equal(sqlite3(file, "PRAGMA integrity_check"), "ok");
  assert.equal(sqlite3(file, "SELECT group_concat(coalesce(name, 'NULL')) FROM (SELECT name FROM people ORDER BY id)"), "ada,NULL");
  assert.equal(sqlite3(file, "SELECT hex(photo) FROM people WHERE id = 1"), "CAFE");
  assert.equal(sqlite3(file, "SELECT count(*) FROM sqlite_master WHERE name = '_raftlite_state'"), "0");
  const size = fs.statSync(file).size;
  assert.match(await page.textContent("#backup-total"), new RegExp(size.toLocaleString("en")));
  assert.match(await page.textContent("#backup-bytes"), new RegExp(size.toLocaleString("en")));
  assert.match(await page.textContent("#backup-index"), /^\d+$/);
  assert.equal(await page.$eval("#backup-progress", (p) => p.value), 1);
  await page.close();
});

test("backup: SQL of a table subset, gzip", async () => {
  const page = await openConsole(A.url, "backup");
  await page.check('input[name="fmt"][value="sql"]');
  await page.fill("#backup-tables", "orders");
  await page.check("#backup-gzip");
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#backup-start")]);
  const file = path.join(TMP, "backup.sql.gz");
  await download.saveAs(file);
  await page.waitForSelector("#backup-state.ok");
  assert.match(download.suggestedFilename(), /\.sql\.gz$/);
  const sql = zlib.gunzipSync(fs.readFileSync(file)).toString("utf8");
  assert.match(sql, /CREATE TABLE orders/);
  assert.doesNotMatch(sql, /people/);
  const db = path.join(TMP, "from-dump.db");
  execFileSync("sqlite3", [db], { input: sql });
  assert.equal(sqlite3(db, "SELECT total FROM orders"), "9.5");
  assert.equal(await page.textContent("#backup-total"), "unknown (streamed)");
  await page.close();
});

test("restore: drag-and-drop into a fresh node, dry run report, confirmation, content", async () => {
  const B = await startNode("b");
  const src = path.join(TMP, "restore-src.db");
  sqlite3(src, "CREATE TABLE books(title TEXT); INSERT INTO books VALUES ('Dune'), ('Emma'); CREATE TABLE tags(t);");
  const page = await openConsole(B.url, "restore");
  await dropFile(page, fs.readFileSync(src), "books.db");
  await page.waitForSelector("#restore-report:not([hidden])");
  assert.match(await page.textContent("#report-kind"), /SQLite database/);
  assert.equal(await page.textContent("#report-tables"), "2");
  assert.match(await page.textContent("#report-pages"), /× 4096 bytes/);
  assert.match(await page.textContent("#restore-warning"), /REPLACES ALL current data/);
  assert.equal(await page.$eval("#upload-progress", (p) => p.value === p.max), true);
  // The dry run changed nothing, and the install waits for the confirmation.
  assert.match((await query(B.url, "SELECT * FROM books")).error, /no such table/);
  assert.equal(await page.isDisabled("#restore-install"), true);
  assert.equal(loadFiles(B.dir).length, 1, "the upload is staged");
  await page.check("#restore-confirm");
  await page.click("#restore-install");
  await page.waitForSelector("#restore-done:not([hidden])");
  assert.match(await page.textContent("#restore-done"), /at raft index \d+/);
  const r = await query(B.url, "SELECT title FROM books ORDER BY title");
  assert.deepEqual(r.values, [["Dune"], ["Emma"]]);
  assert.deepEqual(page.consoleErrors, []);
  await page.close();
});

test("restore: a corrupt file is refused before the confirmation and leaves nothing", async () => {
  const page = await openConsole(A.url, "restore");
  const src = path.join(TMP, "corrupt.db");
  sqlite3(src, "CREATE TABLE big(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000) INSERT INTO big SELECT randomblob(100) FROM n;");
  const bytes = fs.readFileSync(src);
  bytes.fill(0xa5, 4096 * 2, 4096 * 4); // trash two pages of the table's b-tree
  await dropFile(page, bytes, "corrupt.db");
  await page.waitForSelector("#restore-error:not([hidden])");
  assert.match(await page.textContent("#restore-error"), /Refused: 400: invalid SQLite data/);
  assert.equal(await page.isHidden("#restore-report"), true);
  assert.equal(await page.isHidden("#restore-install"), true);
  // Not SQLite, not text: refused too.
  await dropFile(page, Buffer.from([0x00, 0xff, 0x13, 0x37, 0x00]), "garbage.bin");
  await page.waitForFunction(() => /neither a SQLite database nor SQL text/.test(document.querySelector("#restore-error").textContent));
  assert.equal(await page.isHidden("#restore-report"), true);
  assert.deepEqual(loadFiles(A.dir), [], "a refused upload leaves no file");
  assert.equal((await query(A.url, "SELECT count(*) FROM people")).values[0][0], 2);
  await page.close();
});

test("cluster: nodes, leader, indexes, last backup time", async () => {
  const page = await openConsole(A.url, "cluster");
  await page.waitForSelector("#nodes tbody tr");
  const row = await page.textContent("#nodes tbody tr");
  assert.match(row, /leader/);
  assert.match(row, /yes/);
  // Applied index and last backup time come from /console/api/cluster.
  const cells = await page.$$eval("#nodes tbody tr:first-child td", (tds) => tds.map((t) => t.textContent));
  assert.match(cells[4], /^\d+$/);
  assert.match(cells[5], /^\d{4}-\d\d-\d\dT/);
  const facts = await page.textContent("#node-facts");
  assert.match(facts, /StateLeader/);
  assert.match(facts, /Last backup\d{4}-/);
  await page.close();
});

test("credentials: a node with -auth; Basic auth from the form, refusals explained", async () => {
  // `*` (anonymous) may load the console and nothing else. The Query tab sends /db/request,
  // which needs execute and query; `analyst` lacks backup. The admin's password is not ASCII:
  // the node accepting it shows the console encodes user:password as UTF-8.
  const authFile = path.join(TMP, "auth.json");
  fs.writeFileSync(authFile, JSON.stringify([
    { username: "*", perms: ["ui"] },
    { username: "analyst", password: "an-secret", perms: ["execute", "query", "status"] },
    { username: "admin", password: "pässword", perms: ["all"] },
  ]));
  const admin = { Authorization: basicAuth("admin", "pässword") };
  const S = await startNode("secured", ["-auth", authFile], admin);
  // No help with auth challenges here: the console's requests must come back as plain 401s
  // (a challenged 401 leaves a headless browser's request pending, and the steps time out).
  const page = await openConsole(S.url, "query");
  const login = async (user, pass) => {
    await page.click("#creds-summary");
    await page.fill("#creds-user", user);
    await page.fill("#creds-pass", pass);
    await page.click("#creds-form button[type=submit]");
    assert.equal(await page.textContent("#creds-summary"), "Credentials: " + user);
  };

  // Anonymous: the page loads (`ui`), but its node badge (/status and co.) is refused at once,
  // and so is a query; each refusal is explained, and nothing ran.
  await page.waitForSelector("#auth-banner:not([hidden])");
  assert.match(await page.textContent("#auth-banner"), /^401 Unauthorized: the node requires credentials, or refused the ones given\. Enter a user and password under .Credentials.\.$/);
  await page.fill("#sql", "CREATE TABLE notes(body TEXT); INSERT INTO notes VALUES ('kept');");
  await page.click("#run");
  await page.waitForSelector("#results .error");
  assert.match(await page.textContent("#results .error"), /^401 Unauthorized: .*Enter a user and password under .Credentials/);
  assert.equal(await page.isHidden("#auth-banner"), false);
  assert.match((await query(S.url, "SELECT * FROM notes", admin)).error, /no such table/);

  // A wrong password is refused the same way.
  await login("analyst", "wrong");
  await page.click("#run");
  await page.waitForSelector("#results .error");
  assert.match(await page.textContent("#results .error"), /^401 Unauthorized/);
  assert.equal(await page.isHidden("#auth-banner"), false);

  // analyst: the statements run.
  await login("analyst", "an-secret");
  assert.equal(await page.isHidden("#auth-banner"), true);
  await page.fill("#sql", "CREATE TABLE notes(body TEXT); INSERT INTO notes VALUES ('kept'); SELECT body FROM notes;");
  await page.click("#run");
  await page.waitForSelector("#results .result:nth-child(3)");
  assert.equal(await page.textContent("#results .result:nth-child(3) td"), "kept");
  assert.equal(await page.isHidden("#auth-banner"), true);
  assert.deepEqual((await query(S.url, "SELECT body FROM notes", admin)).values, [["kept"]]);

  // analyst has no backup perm: refused before any download starts, and said so.
  let downloads = 0;
  page.on("download", () => downloads++);
  await page.click("#tab-backup");
  await page.click("#backup-start");
  await page.waitForSelector("#backup-state.bad");
  assert.match(await page.textContent("#backup-state"), /^401 Unauthorized: the node requires credentials, or refused the ones given/);
  assert.equal(await page.isHidden("#auth-banner"), false);

  // admin: the backup downloads (its link carries no credentials, only the job's id).
  await login("admin", "pässword");
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#backup-start")]);
  const file = path.join(TMP, "secured-backup.sqlite3");
  await download.saveAs(file);
  await page.waitForSelector("#backup-state.ok");
  assert.equal(downloads, 1, "the refused backup downloaded nothing");
  assert.equal(await page.isHidden("#auth-banner"), true);
  assert.equal(sqlite3(file, "SELECT body FROM notes"), "kept");
  await page.close();
});

test("screenshots of every tab, light and dark", async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  const page = await openConsole(A.url, "query");
  await page.fill("#sql", "SELECT id, name, photo, length(name) AS len FROM people ORDER BY id;\nSELECT total FROM orders;");
  await page.click("#run");
  await page.waitForSelector("#results .result:nth-child(2)");
  await page.click("#tab-backup");
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#backup-start")]);
  await download.path();
  await page.waitForSelector("#backup-state.ok");
  await page.click("#tab-restore");
  const src = path.join(TMP, "shot.db");
  sqlite3(src, "CREATE TABLE notes(body TEXT); INSERT INTO notes VALUES ('hello');");
  await dropFile(page, fs.readFileSync(src), "notes.db");
  await page.waitForSelector("#restore-report:not([hidden])");
  await page.click("#tab-cluster");
  await page.waitForSelector("#nodes tbody tr");
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    for (const tab of ["query", "schema", "backup", "restore", "cluster"]) {
      await page.click("#tab-" + tab);
      if (tab === "schema") await page.waitForSelector('.schema-table[data-table="orders"]');
      await page.mouse.move(0, 0);
      await page.screenshot({ path: path.join(SHOTS, `${tab}-${scheme}.png`) });
    }
  }
  // Leave nothing staged: discarding removes the file at once.
  await page.click("#tab-restore");
  await page.click("#restore-discard");
  for (let i = 0; i < 50 && loadFiles(A.dir).length; i++) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(loadFiles(A.dir), []);
  await page.close();
});
