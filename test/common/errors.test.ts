/**
 * The one table of error codes (common/errors.ts): every code has its HTTP status and retry flag,
 * codes are derived from the table's names, and a failed store operation is classified by what
 * really happened — a full disk or an I/O failure is never reported as corruption.
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { EdgetwinError, ERROR_TABLE, ErrorCodes, errorSpec, isErrorCode, storeErrorCode } from '../../common/errors.js';
import { tempDir } from '../helpers/util.js';

t.test('each code is EDGETWIN_ERR_<row name> and carries a valid status and retry flag', async (t) => {
  const names = Object.keys(ERROR_TABLE);
  t.same(Object.keys(ErrorCodes), names, 'one code per row, nothing else');
  for (const name of names) {
    const code = ErrorCodes[name as keyof typeof ErrorCodes];
    t.equal(code, `EDGETWIN_ERR_${name}`);
    const spec = errorSpec(code)!;
    t.ok(Number.isInteger(spec.status) && spec.status >= 400 && spec.status <= 599, `${code}: status ${spec.status} is an error status`);
    t.type(spec.retryable, 'boolean');
  }
  t.equal(errorSpec('EDGETWIN_ERR_NO_SUCH_THING'), undefined, 'an unknown code has no row');
  t.equal(errorSpec('toString'), undefined, 'nor does an inherited property name');
  t.notOk(isErrorCode('EDGETWIN_ERR_constructor'));
  t.ok(isErrorCode(ErrorCodes.DISK_FULL));
});

t.test('an EdgetwinError answers its status and retry flag from the table', async (t) => {
  const full = new EdgetwinError(ErrorCodes.STORE_FULL, 'staging full');
  t.equal(full.status, 503);
  t.equal(full.retryable, true, 'a full store drains: retry');
  const bad = new EdgetwinError(ErrorCodes.BAD_REQUEST, 'no');
  t.equal(bad.status, 400);
  t.equal(bad.retryable, false, 'the same bad request fails again');
  t.equal(new EdgetwinError(ErrorCodes.MODEL, 'unfit').status, 400, 'an unfit model upload is the caller’s fault');
  t.equal(new EdgetwinError(ErrorCodes.CONFLICT, 'other bytes').status, 409);
  const cause = new Error('root');
  t.equal(new EdgetwinError(ErrorCodes.IO, 'x', { cause }).cause, cause, 'the cause survives for `{ err }` logging');
});

t.test('store failures: full disk is DISK_FULL, unreadable content STORE_CORRUPT, anything else IO', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);

  // SQLITE_FULL from a real database that hit its page limit.
  const db = new Database(join(dir, 'full.db'));
  db.exec('CREATE TABLE x (v BLOB)');
  db.pragma('max_page_count = 3');
  const full = (() => {
    try {
      for (let i = 0; i < 100; i++) db.prepare('INSERT INTO x VALUES (?)').run(Buffer.alloc(4096));
    } catch (err) {
      return err;
    }
  })();
  db.close();
  t.match(full, { code: 'SQLITE_FULL' }, 'SQLite refused the write');
  t.equal(storeErrorCode(full), ErrorCodes.DISK_FULL);

  // SQLITE_NOTADB from a file of garbage.
  const junk = join(dir, 'junk.db');
  writeFileSync(junk, Buffer.alloc(8192, 0x5a));
  const notadb = (() => {
    try {
      new Database(junk).pragma('quick_check');
    } catch (err) {
      return err;
    }
  })();
  t.match(notadb, { code: 'SQLITE_NOTADB' });
  t.equal(storeErrorCode(notadb), ErrorCodes.STORE_CORRUPT);
  t.equal(storeErrorCode(new SyntaxError('Unexpected token')), ErrorCodes.STORE_CORRUPT, 'a state file that does not parse');

  // EISDIR: the operating system refused the write; the content is not at fault.
  mkdirSync(join(dir, 'd'));
  const eisdir = (() => {
    try {
      writeFileSync(join(dir, 'd'), 'x');
    } catch (err) {
      return err;
    }
  })();
  t.match(eisdir, { code: 'EISDIR' });
  t.equal(storeErrorCode(eisdir), ErrorCodes.IO);
  t.equal(storeErrorCode(Object.assign(new Error('disk'), { code: 'ENOSPC' })), ErrorCodes.DISK_FULL);
  t.equal(storeErrorCode(new EdgetwinError(ErrorCodes.STORE_FULL, 'cap')), ErrorCodes.STORE_FULL, 'our own code is kept');
});
