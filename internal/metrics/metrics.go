// Package metrics exposes the daemon's Prometheus metrics on an optional loopback address.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the daemon's counters, gauges and histograms, registered on their own registry (no global state).
type Metrics struct {
	Registry *prometheus.Registry

	CheckpointsSeen      prometheus.Counter
	CheckpointsPublished prometheus.Counter
	CheckpointsFailed    prometheus.Counter
	CheckpointsSkipped   prometheus.Counter
	BytesUploaded        prometheus.Counter
	MergeDuration        prometheus.Histogram
	UploadDuration       prometheus.Histogram
	QueueLength          prometheus.Gauge
}

// New creates the metrics on a fresh registry, with the Go runtime and process collectors.
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		CheckpointsSeen: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hubsync_checkpoints_seen_total", Help: "Complete checkpoints detected."}),
		CheckpointsPublished: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hubsync_checkpoints_published_total", Help: "Checkpoints committed to the Hub."}),
		CheckpointsFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hubsync_checkpoints_failed_total", Help: "Checkpoint jobs that failed permanently."}),
		CheckpointsSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hubsync_checkpoints_skipped_total", Help: "Checkpoints skipped by the 'latest' policy."}),
		BytesUploaded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hubsync_upload_bytes_total", Help: "Bytes sent to Hub storage."}),
		MergeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hubsync_merge_duration_seconds", Help: "Wall time of adapter merges.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14)}),
		UploadDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hubsync_upload_duration_seconds", Help: "Wall time of uploads, commit included.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 16)}),
		QueueLength: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hubsync_queue_length", Help: "Checkpoint jobs waiting or in progress."}),
	}
	r.MustRegister(m.CheckpointsSeen, m.CheckpointsPublished, m.CheckpointsFailed, m.CheckpointsSkipped,
		m.BytesUploaded, m.MergeDuration, m.UploadDuration, m.QueueLength,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Serve serves /metrics on addr until ctx ends. Unless allowRemote is set, addr must be a loopback address:
// metrics describe private repositories and must not leak off the machine by accident.
func (m *Metrics) Serve(ctx context.Context, addr string, allowRemote bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("metrics address %q: %w", addr, err)
	}
	if !allowRemote {
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("metrics address %q is not a loopback address", addr)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shutdownCtx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}
