/** The Blob Storage stand-in lives in bench/ (the DR drill needs it in dist/); tests import it from here. */
export { BlobTestServer, DEV_ACCOUNT, type BlobRequestLog, type BlobTestServerOptions } from '../../bench/blob-server.js';
