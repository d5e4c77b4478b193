"""OpenTelemetry spans through the API only.

Without the ``otel`` extra the API's no-op tracer makes every span free. With it,
``configure_tracing`` installs the SDK and an OTLP exporter when ``OTEL_EXPORTER_OTLP_ENDPOINT``
(the standard variable) is set.
"""

from __future__ import annotations

import logging

from opentelemetry import trace

tracer = trace.get_tracer("medic")
log = logging.getLogger(__name__)


def tracing_enabled() -> bool:
    """Whether spans go anywhere: a real tracer provider is installed (not the API's default).

    Hot paths skip creating spans when this is false; the no-op span still cost about 5% of a
    heartbeat request.
    """
    return not isinstance(
        trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
    )


def configure_tracing(endpoint: str | None, service_name: str = "medic") -> bool:
    if not endpoint:
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "OTLP endpoint set but the otel extra is not installed: pip install 'medic[otel]'"
        )
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    return True
