// Prometheus metrics (prom-client), named as the Python services name theirs
// (docs/architecture.md "Health and metrics"), plus the poll service's own.
import client from 'prom-client';

export class Metrics {
  /** @param {string} service */
  constructor(service) {
    this.service = service;
    this.registry = new client.Registry();
    client.collectDefaultMetrics({ register: this.registry });
    const registers = [this.registry];
    this.requests = new client.Counter({
      name: 'rt_service_requests_total', help: 'Requests handled, by type and result (ok or an error code).',
      labelNames: ['service', 'type', 'result'], registers,
    });
    this.latency = new client.Histogram({
      name: 'rt_service_request_seconds', help: 'Time to handle one request.', labelNames: ['service', 'type'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0], registers,
    });
    /** @param {string} name @param {string} help */
    const gauge = (name, help) => new client.Gauge({ name, help, labelNames: ['service'], registers });
    this.streamLength = gauge('rt_service_stream_length', 'Entries in the request stream (XLEN).');
    this.streamPending = gauge('rt_service_stream_pending', 'Entries delivered but not acknowledged.');
    this.streamLag = gauge('rt_service_stream_lag', 'Entries in the stream not yet delivered (-1 when Redis cannot tell).');
    this.streamConsumers = gauge('rt_service_stream_consumers', "Consumers of the service's group seen within the claim idle time.");
    this.busErrors = new client.Counter({
      name: 'rt_bus_errors_total', help: 'Redis failures on the bus.', labelNames: ['process'], registers,
    });
    this.ready = new client.Gauge({ name: 'rt_ready', help: '1 when /readyz would answer 200 (checked at each scrape), else 0.', registers });
    this.closes = new client.Counter({ name: 'rt_poll_closes_total', help: 'Polls this instance closed (poll.closed published).', registers });
    this.tallies = new client.Counter({ name: 'rt_poll_tallies_total', help: 'Coalesced poll.tally events this instance published late (a vote publishes the others).', registers });
  }

  /** @param {string} type @param {string} result @param {number} seconds */
  handled(type, result, seconds) {
    // Types come from clients: only those a handler knew become label values.
    const label = result === 'unknown_type' || result === 'dropped' ? 'other' : type;
    this.requests.inc({ service: this.service, type: label, result });
    this.latency.observe({ service: this.service, type: label }, seconds);
  }

  /** @param {{length: number, pending: number, lag: number, consumers: number}} backlog */
  backlog(backlog) {
    const labels = { service: this.service };
    this.streamLength.set(labels, backlog.length);
    this.streamPending.set(labels, backlog.pending);
    this.streamLag.set(labels, backlog.lag);
    this.streamConsumers.set(labels, backlog.consumers);
  }
}
