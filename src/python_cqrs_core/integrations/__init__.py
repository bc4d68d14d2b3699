"""Integrations with observability tools and web frameworks, one module each.

======================  ==================  ==========================================
module                  extra               what it adds
======================  ==================  ==========================================
:mod:`.otel`            ``[otel]``          OpenTelemetry spans, baggage, trace context
:mod:`.logging`         none                correlated stdlib log records
:mod:`.structlog`       ``[structlog]``     the same ids in structlog event dicts
:mod:`.prometheus`      ``[prometheus]``    message counters and duration histograms
:mod:`.sentry`          ``[sentry]``        Sentry scopes tagged with the message
:mod:`.audit`           none                audit events as span events and log records
:mod:`.asgi`            none                ``X-Correlation-ID`` for ASGI applications
======================  ==================  ==========================================

The core never imports this package; each module imports its own library only.
"""
