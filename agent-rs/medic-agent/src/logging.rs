//! Structured logs: one JSON object per line on standard error (journald and container runtimes
//! collect it as is), and, with the `otel` feature, trace spans exported over OTLP/gRPC.
//!
//! What is logged is chosen at each call site, and never includes argument values,
//! environment values or the API key: an execution is named by its id and its script's name.

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, fmt};

use crate::config::Config;

/// What must be flushed before the process exits.
#[derive(Default)]
pub struct Guard {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Guard {
    /// Flush and stop exporters. Runs the blocking part off the runtime's thread, which the
    /// exporter needs to make progress.
    pub async fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider {
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

/// Install the process's subscriber. Must run inside the runtime (the OTLP exporter needs it).
pub fn init(config: &Config) -> Result<Guard, String> {
    let level = config
        .level()
        .map_or(LevelFilter::INFO, LevelFilter::from_level);
    let json = fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stderr)
        .with_filter(level);
    let registry = tracing_subscriber::registry().with(json);
    #[cfg(feature = "otel")]
    {
        use opentelemetry::trace::TracerProvider as _;
        let provider = otel_provider(config)?;
        let layer = provider.as_ref().map(|provider| {
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("medic-agent"))
                .with_filter(level)
        });
        registry
            .with(layer)
            .try_init()
            .map_err(|error| error.to_string())?;
        Ok(Guard { provider })
    }
    #[cfg(not(feature = "otel"))]
    {
        registry.try_init().map_err(|error| error.to_string())?;
        if !config.otlp_endpoint.is_empty() {
            tracing::warn!(
                "otlp_endpoint is set but this agent was built without the otel feature; \
                 no spans are exported"
            );
        }
        Ok(Guard::default())
    }
}

#[cfg(feature = "otel")]
fn otel_provider(
    config: &Config,
) -> Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>, String> {
    use opentelemetry_otlp::WithExportConfig as _;

    if config.otlp_endpoint.is_empty() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.otlp_endpoint.clone())
        .build()
        .map_err(|error| format!("cannot set up the OTLP exporter: {error}"))?;
    Ok(Some(
        opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("medic-agent")
                    .build(),
            )
            .build(),
    ))
}
