"""Exports a known set of metrics to Comet with the official OpenTelemetry
Python SDK, as an application would, for tests/otlp.rs.

Usage: export.py grpc|http ENDPOINT RUN_ID

Two collection cycles are exported (force_flush after each), so cumulative
values, delta-to-cumulative conversion and histograms are seen twice. The
values are fixed; tests/otlp.rs checks what Comet stores against them.
"""

import sys

from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableGauge,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import Resource

protocol, endpoint, run_id = sys.argv[1], sys.argv[2], sys.argv[3]

if protocol == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    def exporter(**kw):
        return OTLPMetricExporter(endpoint=endpoint, insecure=True, **kw)
else:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    def exporter(**kw):
        return OTLPMetricExporter(endpoint=endpoint + "/v1/metrics", **kw)


resource = Resource.create(
    {
        "service.name": "checkout",
        "service.namespace": "shop",
        "service.instance.id": f"instance-{protocol}",
        "deployment.environment": "test",
        "host.name": "test-host",
        "comet.run": run_id,
    }
)

views = [
    View(
        instrument_name="test.duration",
        aggregation=ExplicitBucketHistogramAggregation(boundaries=[0.01, 0.1, 1.0]),
    ),
    View(
        instrument_name="test.size",
        aggregation=ExponentialBucketHistogramAggregation(),
    ),
]

# Cumulative (the default) for everything, and a second provider that
# exports its counter with delta temporality.
cumulative_reader = PeriodicExportingMetricReader(exporter(), export_interval_millis=3_600_000)
delta_reader = PeriodicExportingMetricReader(
    exporter(preferred_temporality={Counter: AggregationTemporality.DELTA}),
    export_interval_millis=3_600_000,
)
provider = MeterProvider(resource=resource, metric_readers=[cumulative_reader], views=views)
delta_provider = MeterProvider(resource=resource, metric_readers=[delta_reader])

meter = provider.get_meter("comet-test", "1.2.3")
requests = meter.create_counter("test.requests", unit="{request}", description="Requests served.")
queue = meter.create_up_down_counter("test.queue.size", unit="{item}", description="Items queued.")
duration = meter.create_histogram("test.duration", unit="s", description="Request duration.")
size = meter.create_histogram("test.size", unit="By", description="Payload size.")
temperature = [21.5]
meter.create_observable_gauge(
    "test.temperature",
    callbacks=[lambda _options: [Observation(temperature[0], {"room": "lab"})]],
    unit="Cel",
    description="Room temperature.",
)
events = delta_provider.get_meter("comet-test-delta").create_counter(
    "test.delta.events", description="Events, exported as deltas."
)

attrs = {"http.method": "GET", "http.route": "/cart", "status_code": 200}

# Cycle 1.
requests.add(5, attrs)
queue.add(10, {"queue": "orders"})
for v in [0.002, 0.02, 0.2]:
    duration.record(v, attrs)
for v in [1, 2]:
    size.record(v)
events.add(5, {"kind": "click"})
provider.force_flush()
delta_provider.force_flush()

# Cycle 2.
requests.add(7, attrs)
queue.add(-3, {"queue": "orders"})
duration.record(2.0, attrs)
for v in [4, 1000]:
    size.record(v)
events.add(7, {"kind": "click"})
temperature[0] = 22.25
provider.force_flush()
delta_provider.force_flush()

provider.shutdown()
delta_provider.shutdown()
print("exported")
