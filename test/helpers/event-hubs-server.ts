/**
 * The tests' Azure Event Hubs stand-in (AMQP 1.0 on loopback, rhea). It lives in bench/ so that the
 * alert drill (compiled to dist/) causes Event Hubs consumer lag against the same server.
 */
export { EventHubsTestServer, type EventHubsTestServerOptions, type ReceivedEvent } from '../../bench/event-hubs-server.js';
