#!/usr/bin/env python3
"""Emits OTLP log records with the official OpenTelemetry Python SDK.

The end-to-end tests (tests/e2e/otlp.rs) use it as a real gateway would use
the SDK: a LoggerProvider with a batch processor and the OTLP/HTTP protobuf
exporter (OTLPLogExporter), gzip or not. It reads what to send as JSON on
stdin:

    {"endpoint": "http://127.0.0.1:PORT/v1/logs", "token": "..." | null,
     "gzip": true | false, "resource": {"tenant.id": "acme", ...},
     "records": [{"time_ns": 1764..., "trace_id": "32 hex" | null,
                  "span_id": "16 hex" | null, "body": "..." | null,
                  "attributes": {"mcp.method.name": "tools/call", ...}}]}

and prints, as JSON on stdout, the result of every export the SDK made
(`{"exports": ["SUCCESS"]}`). Run it with `--record FILE` to write the first
request body the exporter sends to FILE instead of sending it anywhere (how
ingest/tests/fixtures/agentgateway_logs.binpb was made).
"""

import json
import sys

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import TraceFlags


class RecordingExporter(OTLPLogExporter):
    """Keeps each export's result for the caller."""

    results = []

    def export(self, batch):
        result = super().export(batch)
        RecordingExporter.results.append(result.name)
        return result


def record_into(path):
    """Starts a receiver that writes the first request body to `path`."""
    import http.server
    import threading

    class Keep(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with open(path, "wb") as f:
                f.write(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Keep)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return "http://127.0.0.1:%d/v1/logs" % server.server_address[1]


def main():
    spec = json.load(sys.stdin)
    record_to = None
    if len(sys.argv) == 3 and sys.argv[1] == "--record":
        record_to = sys.argv[2]
    if record_to:
        # The exact bytes the exporter posts, kept by a local receiver.
        spec["endpoint"] = record_into(record_to)
    headers = {}
    if spec.get("token"):
        headers["authorization"] = "Bearer " + spec["token"]
    exporter = RecordingExporter(
        endpoint=spec["endpoint"],
        headers=headers,
        compression=Compression.Gzip if spec.get("gzip") else Compression.NoCompression,
        timeout=30,
    )
    provider = LoggerProvider(
        resource=Resource.create(spec.get("resource", {})),
    )
    provider.add_log_record_processor(
        BatchLogRecordProcessor(exporter, max_export_batch_size=512)
    )
    logger = provider.get_logger("agentgateway.access")
    for record in spec["records"]:
        trace_id = record.get("trace_id")
        span_id = record.get("span_id")
        logger.emit(
            LogRecord(
                timestamp=record["time_ns"],
                observed_timestamp=record["time_ns"],
                trace_id=int(trace_id, 16) if trace_id else None,
                span_id=int(span_id, 16) if span_id else None,
                trace_flags=TraceFlags(1) if trace_id else None,
                severity_text="INFO",
                severity_number=SeverityNumber.INFO,
                body=record.get("body"),
                attributes=record["attributes"],
            )
        )
    provider.force_flush()
    provider.shutdown()
    json.dump({"exports": RecordingExporter.results}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
