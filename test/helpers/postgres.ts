/**
 * The test harness's PostgreSQL: a real server (Debian's postgresql), initdb'ed as the `postgres`
 * user in a temp dir it owns, on a free loopback port, stopped at the end. It lives in bench/ so that
 * the benchmarks, the chaos run and the DR drill (compiled to dist/) start it the same way.
 */
export { postgresBinDir, startPostgres, type PgServer, type StartOptions } from '../../bench/postgres.js';
