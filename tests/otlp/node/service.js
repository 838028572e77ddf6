// A small Node.js HTTP service instrumented with the OpenTelemetry Node SDK; it exports its spans with
// an OTLP exporter to svcpulse's receiver (tests/otlp/test_node.py starts several of them).
//   PORT                          port to listen on (127.0.0.1)
//   OTLP_PROTOCOL                 "http/protobuf" (default), "http/json" or "grpc": which OTLP exporter
//   OTEL_EXPORTER_OTLP_ENDPOINT   the receiver, e.g. http://127.0.0.1:4318 (or :4317 for grpc)
//   OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_BSP_SCHEDULE_DELAY: the SDK's own variables
// GET /work answers after ~5 ms, failing with 503 at the configured rate; POST /fault?error_rate=0.5
// sets that rate (not traced). Prints "listening <port>" once it accepts connections.
'use strict';
const { NodeSDK } = require('@opentelemetry/sdk-node');
const { HttpInstrumentation } = require('@opentelemetry/instrumentation-http');
const { OTLPTraceExporter: ProtoExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
const { OTLPTraceExporter: GrpcExporter } = require('@opentelemetry/exporter-trace-otlp-grpc');
const { OTLPTraceExporter: JsonExporter } = require('@opentelemetry/exporter-trace-otlp-http');

const exporters = { 'http/protobuf': ProtoExporter, 'http/json': JsonExporter, grpc: GrpcExporter };
const Exporter = exporters[process.env.OTLP_PROTOCOL || 'http/protobuf'];
const sdk = new NodeSDK({
  traceExporter: new Exporter(),
  instrumentations: [new HttpInstrumentation({
    ignoreIncomingRequestHook: (request) => request.url.startsWith('/fault'),
  })],
});
sdk.start();

// Required after sdk.start() so the instrumentation patches the http module.
const http = require('http');
const { trace } = require('@opentelemetry/api');

let errorRate = 0;
const server = http.createServer((request, response) => {
  const url = new URL(request.url, 'http://localhost');
  if (request.method === 'POST' && url.pathname === '/fault') {
    errorRate = Number(url.searchParams.get('error_rate') || 0);
    response.end(`error_rate ${errorRate}\n`);
    return;
  }
  if (url.pathname !== '/work') {
    response.statusCode = 404;
    response.end('not found\n');
    return;
  }
  trace.getActiveSpan()?.setAttribute('http.route', '/work');  // what a router (express, fastify) sets
  setTimeout(() => {
    const failed = Math.random() < errorRate;
    response.statusCode = failed ? 503 : 200;
    response.end(failed ? 'failed\n' : 'ok\n');
  }, 4 + Math.random() * 2);
});

server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});

process.on('SIGTERM', () => {
  server.close();
  sdk.shutdown().finally(() => process.exit(0));  // flushes the spans still queued
});
