"""Mobile pipeline: TFLite conversion (``convert``) and latency measurement (``host_benchmark``)."""
