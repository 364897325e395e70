//! Traces over OTLP/HTTP (protobuf), built only when an endpoint is configured, so a missing
//! collector costs nothing and logs nothing. Exports are counted for `/health/detailed`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter, Tracer};
use opentelemetry_sdk::Resource;

use super::Exporters;
use crate::config::OtelSettings;

/// Wraps the OTLP exporter to count what was sent and what failed, once per batch, without
/// writing an error line every few seconds when the collector is away.
#[derive(Debug)]
struct CountingExporter {
    inner: opentelemetry_otlp::SpanExporter,
    state: Arc<Exporters>,
}

impl SpanExporter for CountingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.inner.export(batch).await;
        let otlp = &self.state.otlp;
        match &result {
            Ok(()) => {
                otlp.sent.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                otlp.failed.fetch_add(1, Ordering::Relaxed);
                otlp.dropped.fetch_add(n, Ordering::Relaxed);
                metrics::counter!("shadowcheck_trace_export_failures_total").increment(1);
                if let Ok(mut last) = otlp.last_error.lock() {
                    *last = Some(e.to_string());
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

pub fn build(
    settings: &OtelSettings,
    endpoint: &str,
    state: Arc<Exporters>,
) -> Result<(SdkTracerProvider, Tracer), String> {
    let traces_url = if endpoint.trim_end_matches('/').ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    };
    let inner = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url)
        .with_timeout(Duration::from_millis(settings.timeout_ms))
        .build()
        .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
    state.otlp.enabled.store(true, Ordering::Relaxed);
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(CountingExporter { inner, state })
        // Follow the caller's sampling decision; sample our own roots by ratio.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(settings.service_name.clone())
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    super::VERSION,
                ))
                .build(),
        )
        .build();
    let tracer = provider.tracer("shadowcheck");
    Ok((provider, tracer))
}
